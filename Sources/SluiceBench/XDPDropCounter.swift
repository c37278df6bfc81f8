#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceXDP
import Logging
import Sluice

/// The embedded `udp_drop` program (bpf/udp_drop.bpf.c) attached to one interface: drops UDP to chosen ports at XDP and counts
/// it per CPU. On the receiving interface it is the in-kernel ceiling; on the generator's
/// interface it counts replies and transmitted traffic without waking the stack. Counting may
/// happen from any thread; attaching and ``detach()`` need the interface's network namespace.
final class XDPDropCounter: @unchecked Sendable {
    /// The mode it runs in (native falls back to generic where the driver refuses).
    let mode: XDPAttachMode
    private var attached = true
    private let index: Int32
    private let opened: BPFObject
    private var program: OpaquePointer { opened.program }
    private let countsMap: Int32
    private let cpus: Int

    /// Attaches in `mode` and drops `ports`. A refused native attach falls back to generic and
    /// says so through `logger`.
    init(interface: String, mode: XDPAttachMode, ports: [UInt16], logger: Logger) throws(SystemCallError) {
        XDPProgram.routeLibraryMessages()
        let index = Int32(bitPattern: if_nametoindex(interface))
        guard index > 0 else {
            throw SystemCallError(.xdp, operation: "finding interface \(interface)", errno: errno, hint: "check the name with `ip link`")
        }
        let opened = try BPFObject.open(named: "udp_drop", programName: "sluice_udp_drop")
        let program = opened.program
        var attachedMode = mode
        var result = xdp_program__attach(program, index, mode.libxdpMode, 0)
        if result < 0 && mode == .native && [EOPNOTSUPP, EINVAL].contains(-result) {
            logger.notice("native XDP refused; counting in generic mode",
                          metadata: ["interface": "\(interface)", "errno": "\(-result)"])
            attachedMode = .generic
            result = xdp_program__attach(program, index, XDPAttachMode.generic.libxdpMode, 0)
        }
        guard result == 0 else {
            opened.close()
            throw SystemCallError(.xdp, operation: "attaching sluice_udp_drop to \(interface)", errno: -result,
                           hint: "another XDP program may be attached: `ip link show \(interface)`")
        }
        let object = xdp_program__bpf_obj(program)
        let portsMap = bpf_object__find_map_fd_by_name(object, "ports")
        let countsMap = bpf_object__find_map_fd_by_name(object, "counts")
        var failure: Int32 = portsMap < 0 || countsMap < 0 ? ENOENT : 0
        for port in ports where failure == 0 {
            var key = UInt32(port)
            var on: UInt8 = 1
            if bpf_map_update_elem(portsMap, &key, &on, 0) != 0 { failure = errno }
        }
        guard failure == 0 else {
            _ = xdp_program__detach(program, index, attachedMode.libxdpMode, 0)
            opened.close()
            throw SystemCallError(.xdp, operation: "setting the ports of sluice_udp_drop on \(interface)", errno: failure,
                           hint: "the object lacks its `ports` or `counts` map")
        }
        self.mode = attachedMode
        self.index = index
        self.opened = opened
        self.countsMap = countsMap
        cpus = Int(max(1, libbpf_num_possible_cpus()))
    }

    /// Packets dropped so far, summed over CPUs.
    func packets() throws(SystemCallError) -> UInt64 {
        var values = [UInt64](repeating: 0, count: cpus)
        var key: UInt32 = 0
        guard bpf_map_lookup_elem(countsMap, &key, &values) == 0 else {
            throw SystemCallError(.xdp, operation: "reading the counts of sluice_udp_drop", errno: errno)
        }
        return values.reduce(0, &+)
    }

    /// Takes the program off the interface; call it in the interface's network namespace.
    func detach() {
        guard attached else { return }
        attached = false
        _ = xdp_program__detach(program, index, mode.libxdpMode, 0)
    }

    deinit { opened.close() }
}
