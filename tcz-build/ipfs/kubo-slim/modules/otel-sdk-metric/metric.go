// Package metric stands in for the OpenTelemetry metrics SDK in the tce-ipfs build of kubo.
//
// kubo's daemon bridges metrics that libraries record through the OpenTelemetry API (DHT provide
// counters, HTTP server histograms) into /debug/metrics/prometheus with this SDK and the
// Prometheus exporter (../otel-prometheus). Together they cost about 0.35 MiB of ipfs.tcz. Here the
// meter provider records nothing: /debug/metrics/prometheus still serves every metric registered
// with the Prometheus client directly (libp2p, bitswap, the resource manager, Go runtime), only the
// OpenTelemetry-recorded ones are missing.
package metric

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
)

// MeterProvider hands out no-op meters.
type MeterProvider struct{ noop.MeterProvider }

// Option configures nothing.
type Option func(*MeterProvider)

// Instrument, Stream and View have upstream's shapes for kubo's one view.
type Instrument struct{ Name string }

type Stream struct{ AttributeFilter attribute.Filter }

type View func(Instrument) (Stream, bool)

func ignore(*MeterProvider) {}

func NewView(Instrument, Stream) View {
	return func(Instrument) (Stream, bool) { return Stream{}, false }
}
func WithView(...View) Option                   { return ignore }
func WithExemplarFilter(exemplar.Filter) Option { return ignore }
func WithReader(any) Option                     { return ignore }
func NewMeterProvider(...Option) *MeterProvider { return &MeterProvider{} }
