// Package autoprop stands in for OpenTelemetry's OTEL_PROPAGATORS-driven propagator set in the
// tce-ipfs build of kubo. The real one links the B3, Jaeger, OT and AWS X-Ray propagators (X-Ray
// pulls in the tracing SDK). With no tracing in this build there are no spans to propagate; this
// returns upstream's default (W3C trace context and baggage), which costs nothing.
package autoprop

import "go.opentelemetry.io/otel/propagation"

// NewTextMapPropagator returns the W3C trace-context + baggage propagator; arguments are ignored.
func NewTextMapPropagator(...propagation.TextMapPropagator) propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
