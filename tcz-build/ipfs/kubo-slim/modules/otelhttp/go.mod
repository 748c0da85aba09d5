// tce-ipfs: stands in for OpenTelemetry's net/http instrumentation in the slim kubo build.
module go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp

go 1.25
