// tce-ipfs: stands in for OpenTelemetry's eBPF auto-instrumentation SDK in the slim kubo build.
module go.opentelemetry.io/auto/sdk

go 1.25
