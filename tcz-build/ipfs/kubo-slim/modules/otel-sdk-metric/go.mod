// tce-ipfs: stands in for the OpenTelemetry metrics SDK in the slim kubo build.
module go.opentelemetry.io/otel/sdk/metric

go 1.25
