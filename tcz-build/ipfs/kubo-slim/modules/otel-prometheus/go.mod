// tce-ipfs: stands in for the OpenTelemetry Prometheus exporter in the slim kubo build.
module go.opentelemetry.io/otel/exporters/prometheus

go 1.25
