// tce-ipfs: stands in for OpenTelemetry's environment-selected propagators in the slim kubo build.
module go.opentelemetry.io/contrib/propagators/autoprop

go 1.25
