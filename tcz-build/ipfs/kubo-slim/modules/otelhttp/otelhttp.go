// Package otelhttp stands in for OpenTelemetry's net/http instrumentation in the tce-ipfs build of
// kubo. kubo and boxo wrap their HTTP handlers (RPC API, gateway) and clients (delegated routing)
// in it to record spans and http.server.* metrics. This build has no tracing SDK and no
// OpenTelemetry metrics SDK (see ../otel-sdk-metric), so the wrappers had nothing to report to;
// here they return the handler or transport unchanged. That drops the instrumentation, its
// semantic-convention tables and the ResponseWriter wrappers (about 0.3 MiB of ipfs.tcz).
package otelhttp

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
)

// Option configures nothing.
type Option interface{ unused() }

// NewHandler returns h itself.
func NewHandler(h http.Handler, _ string, _ ...Option) http.Handler { return h }

// NewTransport returns base itself (http.DefaultTransport for nil, as upstream does).
func NewTransport(base http.RoundTripper, _ ...Option) http.RoundTripper {
	if base == nil {
		return http.DefaultTransport
	}
	return base
}

// WithSpanNameFormatter is accepted and ignored: there are no spans.
func WithSpanNameFormatter(func(string, *http.Request) string) Option { return nil }

// Labeler collects nothing; LabelerFromContext never finds one.
type Labeler struct{}

func (*Labeler) Add(...attribute.KeyValue) {}

func LabelerFromContext(context.Context) (*Labeler, bool) { return nil, false }
