// Package tracing: the tce-ipfs build of kubo replaces upstream's tracing.go with this file.
//
// Upstream builds an OpenTelemetry tracer provider with span exporters chosen by OTEL_* variables
// (OTLP over gRPC or HTTP, zipkin, a file). A Tiny Core node exports no traces, so the provider is
// a no-op: no tracing SDK, exporters, gRPC or semantic-convention tables are linked, and
// OTEL_TRACES_EXPORTER is ignored. Span keeps upstream's signature so every caller compiles.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// shutdownTracerProvider is what kubo's start-up code expects: a provider it can shut down.
type shutdownTracerProvider interface {
	trace.TracerProvider
	Shutdown(ctx context.Context) error
}

type noopProvider struct{ noop.TracerProvider }

func (noopProvider) Shutdown(context.Context) error { return nil }

// NewTracerProvider returns a provider whose spans record nothing.
func NewTracerProvider(context.Context) (shutdownTracerProvider, error) {
	return noopProvider{noop.NewTracerProvider()}, nil
}

// Span starts a span named "<component>.<span>" on the global tracer (a no-op here).
func Span(ctx context.Context, componentName string, spanName string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return otel.Tracer("Kubo").Start(ctx, componentName+"."+spanName, opts...)
}
