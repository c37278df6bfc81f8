#if canImport(Glibc)
import Glibc
#endif
import SluiceSystem

extension UDPServer: MetricsSource {
    /// Each worker's last ``WorkerSample`` (port, UDP stage, host stage and service counters, drops
    /// by cause) and thread CPU, labelled with the backend, the worker and its queue; then the
    /// backend's own metrics (``UDPBackend/collectMetrics(into:)``).
    public func collectMetrics(into snapshot: inout MetricsSnapshot) {
        let name = type(of: backend).name
        for state in states {
            var labels = [("backend", name), ("worker", "\(state.index)")]
            if let queue = backend.queue(ofWorker: state.index) { labels.append(("queue", "\(queue)")) }
            if let seconds = state.cpuSeconds { snapshot.counter("sluice_worker_cpu_seconds_total", seconds, labels) }
            guard let sample = state.sample else { continue }
            sample.collect(into: &snapshot, labels: labels)
        }
        backend.collectMetrics(into: &snapshot)
    }
}

extension WorkerSample {
    /// The UDP stage's counters that count drops (the rest count work done).
    static let stageDrops: Set<String> = [
        "dropped_by_service", "emit_failures", "not_udp", "fragments", "bad_checksum", "family_mismatch", "bad_ip_checksum",
        "not_local", "martian", "reply_to_port_zero", "refused_ip_options", "vlan_without_device",
    ]
    /// The host stage's counters that count drops: everything taken in and not answered, so a
    /// summary's received packets are its answers and services' plus these.
    static let hostDrops: Set<String> = [
        "not_for_this_host", "other_ethertype", "host_malformed", "host_bad_checksum", "fragment_duplicates",
        "fragment_overlaps", "reassembly_timeouts", "reassembly_evictions", "fragment_malformed", "reassembly_no_frame",
        "dropped_output", "host_refused_options", "closed_port", "ignored_control",
    ]

    /// Appends the sample under the names the README lists: `sluice_port_*_total`,
    /// `sluice_udp_*_total`, `sluice_host_*_total`, `sluice_service_*_total`, and every drop as
    /// `sluice_drops_total{layer, cause}`.
    func collect(into snapshot: inout MetricsSnapshot, labels: [(String, String)]) {
        let port: [(String, UInt64)] = [
            ("received_packets", self.port.receivedPackets), ("received_bytes", self.port.receivedBytes),
            ("transmitted_packets", self.port.transmittedPackets), ("transmitted_bytes", self.port.transmittedBytes),
            ("receive_calls", self.port.receiveCalls), ("transmit_calls", self.port.transmitCalls),
            ("receive_buffer_stalls", self.port.receiveBufferStalls), ("gro_segments", self.port.coalescedSegments),
            ("gso_segments", self.port.segmentedPackets),
        ]
        for (field, value) in port { snapshot.counter("sluice_port_\(field)_total", value, labels) }
        for (cause, value) in [("no_frame", self.port.droppedNoFrame), ("truncated", self.port.droppedTruncated),
                               ("transmit", self.port.droppedTransmit), ("malformed", self.port.droppedMalformed),
                               ("socket_buffer", self.port.droppedSocketBuffer)] {
            snapshot.counter("sluice_drops_total", value, labels + [("layer", "port"), ("cause", cause)])
        }
        for (field, value) in stage.fields {
            if Self.stageDrops.contains(field) || field.hasPrefix("malformed_") {
                let cause = String(field.map { $0 == "-" ? "_" : $0 })
                snapshot.counter("sluice_drops_total", value, labels + [("layer", "udp"), ("cause", cause)])
            } else {
                snapshot.counter("sluice_udp_\(field)_total", value, labels)
            }
        }
        for (field, value) in host?.fields ?? [] {
            if Self.hostDrops.contains(field) {
                snapshot.counter("sluice_drops_total", value, labels + [("layer", "host"), ("cause", field)])
            } else {
                snapshot.counter("sluice_host_\(field)_total", value, labels)
            }
        }
        for (field, value) in service { snapshot.counter("sluice_service_\(field)_total", value, labels) }
    }
}

/// The process as a whole: CPU, resident memory, and which Sluice it is.
public struct ProcessMetrics: MetricsSource {
    /// What the process serves, e.g. `"udp-echo"`, as the `service` label of `sluice_info`.
    public var service: String

    /// Metrics for a process serving `service`.
    public init(service: String) { self.service = service }

    /// `sluice_info{version, service}` (always 1), `sluice_process_cpu_seconds_total` and
    /// `sluice_process_resident_memory_bytes`.
    public func collectMetrics(into snapshot: inout MetricsSnapshot) {
        snapshot.gauge("sluice_info", 1, [("version", SluiceVersion.current), ("service", service)])
        let labels = [("service", service)]
        snapshot.counter("sluice_process_cpu_seconds_total", ProcessCPU.seconds(), labels)
        // statm's second field: resident pages.
        if let statm = TextFile.read("/proc/self/statm"), let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) {
            snapshot.gauge("sluice_process_resident_memory_bytes", pages * Double(sysconf(Int32(_SC_PAGESIZE))), labels)
        }
    }
}
