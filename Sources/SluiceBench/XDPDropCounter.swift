#if canImport(Glibc)
import Glibc
#endif
import CSluice
import Sluice

/// `bpf/udp_drop.bpf.o` attached to one interface: drops UDP to chosen ports at XDP and counts
/// it per CPU. On the receiving interface it is the in-kernel ceiling; on the generator's
/// interface it counts replies and transmitted traffic without waking the stack. Counting may
/// happen from any thread; attaching and ``detach()`` need the interface's network namespace.
final class XDPDropCounter: @unchecked Sendable {
    /// The mode it runs in (native falls back to generic where the driver refuses).
    let mode: XDPAttachMode
    private var attached = true
    private let index: Int32
    private let program: OpaquePointer
    private let countsMap: Int32
    private let cpus: Int

    /// Attaches in `mode` and drops `ports`. A refused native attach falls back to generic and
    /// says so in one line on stderr.
    init(interface: String, mode: XDPAttachMode, ports: [UInt16]) throws(XDPError) {
        XDPProgram.installLogFilter()
        let path = try XDPProgram.objectPath(named: "udp_drop.bpf.o")
        let index = Int32(bitPattern: if_nametoindex(interface))
        guard index > 0 else {
            throw XDPError(operation: "finding interface \(interface)", errno: errno, hint: "check the name with `ip link`")
        }
        guard let program = path.withCString({ xdp_program__open_file($0, "xdp", nil) }),
              libxdp_get_error(UnsafeRawPointer(program)) == 0 else {
            throw XDPError(operation: "opening sluice_udp_drop in \(path)", errno: EINVAL, hint: "rebuild it with `make bpf`")
        }
        var attachedMode = mode
        var result = xdp_program__attach(program, index, mode.libxdpMode, 0)
        if result < 0 && mode == .native && [EOPNOTSUPP, EINVAL].contains(-result) {
            writeToStandardError("sluice bench: native XDP refused on \(interface) (errno \(-result)); counting in generic mode\n")
            attachedMode = .generic
            result = xdp_program__attach(program, index, XDPAttachMode.generic.libxdpMode, 0)
        }
        guard result == 0 else {
            xdp_program__close(program)
            throw XDPError(operation: "attaching sluice_udp_drop to \(interface)", errno: -result,
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
            xdp_program__close(program)
            throw XDPError(operation: "setting the ports of sluice_udp_drop on \(interface)", errno: failure,
                           hint: "the object lacks its `ports` or `counts` map: rebuild it with `make bpf`")
        }
        self.mode = attachedMode
        self.index = index
        self.program = program
        self.countsMap = countsMap
        cpus = Int(max(1, libbpf_num_possible_cpus()))
    }

    /// Packets dropped so far, summed over CPUs.
    func packets() throws(XDPError) -> UInt64 {
        var values = [UInt64](repeating: 0, count: cpus)
        var key: UInt32 = 0
        guard bpf_map_lookup_elem(countsMap, &key, &values) == 0 else {
            throw XDPError(operation: "reading the counts of sluice_udp_drop", errno: errno)
        }
        return values.reduce(0, &+)
    }

    /// Takes the program off the interface; call it in the interface's network namespace.
    func detach() {
        guard attached else { return }
        attached = false
        _ = xdp_program__detach(program, index, mode.libxdpMode, 0)
    }

    deinit { xdp_program__close(program) }
}
