/// The help text of each metric Sluice reports, for exporters that print one (a Prometheus
/// page's `# HELP` lines).
///
/// Names built from a family and a field (`sluice_tcp_sent_bytes_total`) are described by the
/// family and the field's words, so every name a ``MetricsSnapshot`` of Sluice's sources holds
/// has a text; a name of another program gets `nil`.
///
/// ```swift
/// MetricHelp.text(for: "sluice_port_received_packets_total")
/// // "Received packets, at the port (socket, io_uring, AF_XDP socket or TUN/TAP device)."
/// ```
public enum MetricHelp {
    /// The help text for `name`, or `nil` for a name Sluice does not report.
    public static func text(for name: String) -> String? {
        if let text = exact[name] { return text }
        for (prefix, family) in families where name.hasPrefix(prefix) {
            var field = name.dropFirst(prefix.count)
            if field.hasSuffix("_total") { field = field.dropLast("_total".count) }
            guard !field.isEmpty else { return nil }
            let words = field.replacingUnderscores()
            return words.prefix(1).uppercased() + words.dropFirst() + ", " + family + "."
        }
        return nil
    }

    private static let exact: [String: String] = [
        "sluice_info": "Always 1; the labels say which Sluice version serves which service.",
        "sluice_process_cpu_seconds_total": "CPU time of the whole process (user and system), in seconds.",
        "sluice_process_resident_memory_bytes": "Resident memory of the process, in bytes.",
        "sluice_worker_cpu_seconds_total": "CPU time of each worker thread (user and system), in seconds.",
        "sluice_drops_total": "Packets dropped, by the layer that dropped them (port, udp, host, xsk) and the cause.",
        "sluice_port_receive_calls_total":
            "Calls into the kernel to receive (syscalls, io_uring_enter or XSK wakeups), at the port.",
        "sluice_port_transmit_calls_total":
            "Calls into the kernel to send (syscalls, io_uring_enter or XSK wakeups), at the port.",
        "sluice_port_receive_buffer_stalls_total": "Times the io_uring buffer ring ran dry (ENOBUFS), at the port.",
        "sluice_port_gro_segments_total": "Datagrams received coalesced by UDP GRO and split, at the port.",
        "sluice_port_gso_segments_total": "Datagrams sent in UDP GSO sends, at the port.",
        "sluice_xdp_verdicts_total":
            "Frames the XDP program handled since this run started, by verdict (redirected, or passed to the kernel and why).",
        "sluice_xsk_fill_ring_empty_total":
            "Times the kernel found the AF_XDP fill ring empty (XDP_STATISTICS rx_fill_ring_empty_descs).",
        "sluice_xsk_tx_ring_empty_total":
            "Times the kernel found the AF_XDP TX ring empty on a wakeup (XDP_STATISTICS tx_ring_empty_descs).",
        "sluice_tcp_open_connections": "TCP connections open now, in the io_uring TCP engine.",
        "sluice_uring_enters_total": "io_uring_enter calls of the io_uring TCP engine.",
        "sluice_tls_handshakes_total": "TLS handshakes, by result (completed, failed).",
        "sluice_tls_resumed_handshakes_total": "TLS handshakes that resumed a session (a ticket).",
        "sluice_tls_client_certificates_total": "TLS handshakes whose client presented a certificate that verified (tls serve --client-ca).",
        "sluice_tls_plaintext_received_bytes_total": "Application bytes received over TLS, after decryption.",
        "sluice_tls_failed_connections_total": "TLS connections ended by an error or an alert.",
        "sluice_tls_truncated_connections_total": "TLS connections the peer closed without close_notify.",
        "sluice_tls_connections_ended_total": "Established TLS connections by how they ended (completed, cut_short by a stop with "
            + "data unsent, closed_at_stop after its grace, transport_failure, idle, evicted to make room); failed and truncated ones have their own counters.",
        "sluice_tls_key_updates_total": "TLS 1.3 KeyUpdate messages, by direction (received, sent).",
    ]

    /// Families whose names are a prefix and a field, each with what it counts.
    private static let families: [(String, String)] = [
        ("sluice_port_", "at the port (socket, io_uring, AF_XDP socket or TUN/TAP device)"),
        ("sluice_udp_", "counted by the UDP stage"),
        ("sluice_host_", "counted by the TUN/TAP host stage (ARP, neighbour discovery, ICMP, fragments)"),
        ("sluice_service_", "counted by the service itself"),
        ("sluice_dns_tcp_", "counted by DNS over TCP"),
        ("sluice_tcp_", "counted by the io_uring TCP engine"),
    ]
}

extension Substring {
    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? " " : $0 })
    }
}
