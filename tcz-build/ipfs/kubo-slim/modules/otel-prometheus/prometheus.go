// Package prometheus stands in for the OpenTelemetry-to-Prometheus bridge in the tce-ipfs build of
// kubo; see ../otel-sdk-metric for what that leaves out of /debug/metrics/prometheus.
package prometheus

import "github.com/prometheus/client_golang/prometheus"

// Exporter exports nothing.
type Exporter struct{}

// Option configures nothing.
type Option func(*Exporter)

// WithRegisterer is accepted and ignored.
func WithRegisterer(prometheus.Registerer) Option { return func(*Exporter) {} }

// New returns the inert exporter (never an error, so the daemon logs nothing about it).
func New(...Option) (*Exporter, error) { return &Exporter{}, nil }
