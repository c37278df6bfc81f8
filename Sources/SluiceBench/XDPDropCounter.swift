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
    let interface: String
    let mode: XDPAttachMode
    private var attached = true
    private let index: Int32
    private let program: OpaquePointer
    private let portsMap: Int32
    private let countsMap: Int32
    private let cpus: Int

    /// Attaches in `mode` (native falls back to generic, announced in one line) and drops `ports`.
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
        var result = xdp_program__attach(program, index, Self.libxdpMode(mode), 0)
        if result < 0 && mode == .native {
            print("sluice bench: native XDP refused on \(interface) (errno \(-result)); counting in generic mode")
            attachedMode = .generic
            result = xdp_program__attach(program, index, Self.libxdpMode(.generic), 0)
        }
        guard result == 0 else {
            xdp_program__close(program)
            throw XDPError(operation: "attaching sluice_udp_drop to \(interface)", errno: -result,
                           hint: "another XDP program may be attached: `ip link show \(interface)`")
        }
        let object = xdp_program__bpf_obj(program)
        self.interface = interface
        self.mode = attachedMode
        self.index = index
        self.program = program
        portsMap = bpf_object__find_map_fd_by_name(object, "ports")
        countsMap = bpf_object__find_map_fd_by_name(object, "counts")
        cpus = Int(max(1, libbpf_num_possible_cpus()))
        for port in ports {
            var key = UInt32(port)
            var on: UInt8 = 1
            bpf_map_update_elem(portsMap, &key, &on, 0)
        }
    }

    /// Packets and bytes dropped so far, summed over CPUs.
    func counts() -> (packets: UInt64, bytes: UInt64) {
        var values = [UInt64](repeating: 0, count: cpus)
        var result: (UInt64, UInt64) = (0, 0)
        for slot in 0..<2 {
            var key = UInt32(slot)
            guard bpf_map_lookup_elem(countsMap, &key, &values) == 0 else { continue }
            let sum = values.reduce(0, &+)
            if slot == 0 { result.0 = sum } else { result.1 = sum }
        }
        return result
    }

    private static func libxdpMode(_ mode: XDPAttachMode) -> xdp_attach_mode {
        mode == .native ? XDP_MODE_NATIVE : XDP_MODE_SKB
    }

    /// Takes the program off the interface; call it in the interface's network namespace.
    func detach() {
        guard attached else { return }
        attached = false
        _ = xdp_program__detach(program, index, Self.libxdpMode(mode), 0)
    }

    deinit { xdp_program__close(program) }
}
