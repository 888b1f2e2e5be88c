package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnat/xnat/mgmt/export"
)

// The IPFIX and syslog exporters' health (docs/cgn.md), labelled by
// exporter ("ipfix", "syslog").
var (
	dExpSent      = desc("xnat_export_records_sent_total", "NAT log records sent to the collector.", "exporter")
	dExpDropped   = desc("xnat_export_records_dropped_total", "NAT log records lost: the exporter's queue was full or the send failed.", "exporter")
	dExpTemplates = desc("xnat_export_templates_sent_total", "IPFIX template records sent (first message, refresh, reconnection).", "exporter")
	dExpMessages  = desc("xnat_export_messages_sent_total", "Messages (IPFIX messages, syslog messages) sent.", "exporter")
	dExpErrors    = desc("xnat_export_errors_total", "Failed sends and connection attempts.", "exporter")
	dExpUp        = desc("xnat_export_up", "1 if the exporter's last send succeeded.", "exporter")

	// Port blocks (port_allocation: block); zero in the other modes.
	dBlocksInUse = desc("xnat_port_blocks_in_use", "Port blocks held by subscribers or in hold-down.")
	dBlocksAlloc = desc("xnat_port_blocks_allocated_total", "Port blocks given to subscribers.")
	dBlocksFreed = desc("xnat_port_blocks_released_total", "Port blocks freed after the hold-down.")
	dBlocksCut   = desc("xnat_port_block_holds_shortened_total", "Port blocks freed before their hold-down ended, the block table having no room for them (counted in xnat_port_blocks_released_total too).")
)

func describeExport(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dExpSent, dExpDropped, dExpTemplates, dExpMessages, dExpErrors, dExpUp} {
		ch <- d
	}
}

func collectExport(ch chan<- prometheus.Metric, sinks []export.Stats) {
	for _, s := range sinks {
		for _, m := range []struct {
			d *prometheus.Desc
			v uint64
		}{{dExpSent, s.Sent}, {dExpDropped, s.Dropped}, {dExpTemplates, s.Templates}, {dExpMessages, s.Messages}, {dExpErrors, s.Errors}} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), s.Name)
		}
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(dExpUp, prometheus.GaugeValue, up, s.Name)
	}
}
