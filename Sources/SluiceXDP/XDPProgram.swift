#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceXDP
import Logging
import SluiceCore
import SluicePackets
import SluiceSystem
import Synchronization

/// Where an XDP program runs on an interface.
public enum XDPAttachMode: String, Sendable, CaseIterable {
    /// In the driver, before an skb exists (`XDP_MODE_NATIVE`, `XDP_FLAGS_DRV_MODE`). Fastest on real NICs.
    case native
    /// In the generic receive path, after the skb is built (`XDP_MODE_SKB`, `XDP_FLAGS_SKB_MODE`).
    /// Works on every interface; on veth it is faster than native.
    case generic

    /// libxdp's mode value.
    public var libxdpMode: xdp_attach_mode { self == .native ? XDP_MODE_NATIVE : XDP_MODE_SKB }

    /// The netlink attach flag for this mode.
    var netlinkFlags: UInt32 { self == .native ? UInt32(XDP_FLAGS_DRV_MODE) : UInt32(XDP_FLAGS_SKB_MODE) }

    /// A description for messages, e.g. "generic (skb)".
    var label: String { self == .native ? "native" : "generic (skb)" }

    /// The `ip link set dev X … off` keyword that removes a program attached in this mode.
    public var ipLinkKeyword: String { self == .native ? "xdp" : "xdpgeneric" }
}

/// The program's verdict counters (the `verdicts` map), summed over CPUs.
public struct XDPVerdicts: Sendable, Equatable, CustomStringConvertible {
    /// Frames handed to the AF_XDP socket of their queue.
    public var redirected: UInt64 = 0
    /// Frames passed to the kernel because they are not UDP (ARP, ICMP, TCP, NDP, other EtherTypes).
    public var passedNotUDP: UInt64 = 0
    /// UDP frames passed because their destination port is not steered.
    public var passedPort: UInt64 = 0
    /// UDP frames to a steered port passed because no socket (of the listener's server) is bound
    /// on the receiving queue.
    public var passedNoSocket: UInt64 = 0
    /// IP fragments, passed for the kernel to reassemble.
    public var passedFragment: UInt64 = 0
    /// Frames with truncated or invalid headers, passed for the kernel to judge.
    public var passedMalformed: UInt64 = 0
    /// Frames that are not this interface's to take (see ``XDPLinkFilter``): for another MAC,
    /// to an address not the interface's or a group address (the kernel knows the groups joined),
    /// or tagged with a VLAN that has its own device.
    public var passedNotOurs: UInt64 = 0
    /// Frames with IPv4 options or IPv6 extension headers, passed for the kernel to process (it
    /// answers what is wrong with a parameter problem; the server's kernel socket gets the rest).
    public var passedOptions: UInt64 = 0
    /// Frames longer than the sockets' frames hold (``XDPLinkFilter/maximumFrame``, a link MTU
    /// past them), passed so the server's kernel socket takes them instead of the XSK dropping them.
    public var passedTooLarge: UInt64 = 0

    /// All zero.
    public init() {}

    /// Every frame the program saw.
    public var total: UInt64 {
        redirected + passedNotUDP + passedPort + passedNoSocket + passedFragment + passedMalformed + passedNotOurs + passedOptions
            + passedTooLarge
    }

    /// What was counted since `earlier`, a reading of the same program's counters.
    public func since(_ earlier: XDPVerdicts) -> XDPVerdicts {
        var verdicts = self
        for counter in Self.counters {
            // A count below the earlier reading belongs to another program, put there meanwhile.
            if self[keyPath: counter] >= earlier[keyPath: counter] { verdicts[keyPath: counter] -= earlier[keyPath: counter] }
        }
        return verdicts
    }

    /// Every counter.
    static var counters: [WritableKeyPath<XDPVerdicts, UInt64>] {
        [\.redirected, \.passedNotUDP, \.passedPort, \.passedNoSocket, \.passedFragment, \.passedMalformed, \.passedNotOurs,
         \.passedOptions, \.passedTooLarge]
    }

    /// The names ``fields`` uses, in order.
    public static var fieldNames: [String] { XDPVerdicts().fields.map(\.0) }

    /// The verdicts as name–value pairs, for metrics and JSON.
    public var fields: [(String, UInt64)] {
        [("redirected", redirected), ("passed_not_udp", passedNotUDP), ("passed_port", passedPort),
         ("passed_no_socket", passedNoSocket), ("passed_fragment", passedFragment), ("passed_malformed", passedMalformed),
         ("passed_not_ours", passedNotOurs), ("passed_options", passedOptions), ("passed_too_large", passedTooLarge)]
    }

    public var description: String {
        "redirected \(redirected), passed: not UDP \(passedNotUDP), port not steered \(passedPort), "
            + "no socket on queue \(passedNoSocket), fragment \(passedFragment), malformed \(passedMalformed), "
            + "not ours \(passedNotOurs), options \(passedOptions), too large \(passedTooLarge)"
    }
}

/// What the program leaves to the kernel because the kernel would not give it to a socket of
/// this interface: a unicast frame for another MAC (the kernel drops it as `PACKET_OTHERHOST`),
/// a VLAN tag with a device of its own (that device's traffic), and, for a wildcard listener,
/// an address that is not the interface's.
public struct XDPLinkFilter: Sendable, Equatable {
    /// The interface's MAC; `nil`: frames are not checked by MAC.
    public var localMAC: MACAddress?
    /// The VLAN IDs that have a device on the interface.
    public var vlanDeviceIDs: Set<UInt16> = []
    /// The interface's unicast and broadcast addresses a wildcard listener takes; `nil`: any.
    public var localAddresses: [IPAddress]?
    /// The longest frame an AF_XDP socket's frame holds; a longer one (a link MTU raised past
    /// it) is passed to the kernel, whose socket takes it, instead of the XSK dropping it. Shared
    /// by the servers on the interface, it is only ever lowered (the smallest of theirs). `nil`: left as it is.
    public var maximumFrame: Int?

    /// Nothing filtered.
    public init(localMAC: MACAddress? = nil, vlanDeviceIDs: Set<UInt16> = [], localAddresses: [IPAddress]? = nil,
                maximumFrame: Int? = nil) {
        self.localMAC = localMAC
        self.vlanDeviceIDs = vlanDeviceIDs
        self.localAddresses = localAddresses
        self.maximumFrame = maximumFrame
    }
}

/// The sluice program attached to one interface, with its maps.
///
/// `attach(to:)` loads the embedded `xsk_redirect` program (bpf/xsk_redirect.bpf.c) through libxdp and attaches it; `attached(on:)`
/// finds one attached earlier (by `sluice xdp load` in another process, say). The program
/// steers UDP to the ports in its `ports` map into the AF_XDP socket of the receiving queue
/// (the `xsks_map` entry for that queue) and passes everything else to the kernel.
///
/// Interface names and indices are per network namespace: use an instance from a thread in the
/// namespace it was made in. Releasing the instance closes its descriptors but leaves the program
/// attached (like `xdp-loader`): call `detach()` to remove it.
public final class XDPProgram: @unchecked Sendable {
    /// The interface's name, e.g. "veth1".
    public let interfaceName: String
    /// The interface's index in its network namespace.
    public let interfaceIndex: Int32
    /// The mode the program runs in (native can have fallen back to generic).
    public let mode: XDPAttachMode
    /// The kernel's id for the program (`bpftool prog show id N`, `ip -d link show`).
    public let programID: UInt32
    /// True when `attach(to:)` found the program already attached and returned it.
    public let wasAlreadyAttached: Bool
    /// One line about how libxdp attached the program, when it matters: e.g. that its
    /// multi-program dispatcher was unavailable and the program runs alone. `nil` otherwise.
    public let attachNote: String?

    /// Whether the program runs as a component of libxdp's dispatcher (not alone).
    let viaDispatcher: Bool
    /// The id the interface reports for this program: `nil` under libxdp's dispatcher, whose id
    /// the interface reports instead.
    public var interfaceProgramID: UInt32? { viaDispatcher ? nil : programID }
    private let programDescriptor: Int32
    private let xsksMap: Int32
    private let portsMap: Int32
    /// The `listeners` map; -1 for a program from before listen addresses were steered.
    private let listenersMap: Int32
    /// The `queue_owners` map (the process whose XSK holds each queue); -1 for a program from
    /// before listeners had owners.
    private let queueOwnersMap: Int32
    /// The `port_listeners` map (each port's listeners at a glance); -1 for a program without it.
    private let portListenersMap: Int32
    /// The `link`, `vlan_devices` and `local_addresses` maps; -1 for a program without them.
    private let linkMap: Int32
    private let vlanDevicesMap: Int32
    private let localAddressesMap: Int32
    /// The `frame_limit` map; -1 for a program from before frames too large were passed.
    private let frameLimitMap: Int32
    private let verdictsMap: Int32
    /// libxdp's handle and its object when this instance loaded the program.
    private let handle: BPFObject?

    /// The kernel's name for our program: "sluice_xsk_redirect" cut to 15 characters
    /// (the frags variant "sluice_xsk_redirect_frags" cuts to the same).
    static let kernelProgramName = "sluice_xsk_redi"
    /// Map names the program must own to count as ours.
    static let mapNames = ["xsks_map", "ports", "verdicts"]
    /// Maps opened when the program has them (newer builds).
    static let optionalMapNames = ["listeners", "port_listeners", "link", "vlan_devices", "local_addresses", "queue_owners",
                                   "frame_limit"]
    /// Number of slots in the `verdicts` map (a program from an older build has fewer: those read as 0).
    static let verdictCount = 9

    /// The object for the plain or the multi-buffer program, as the package embeds it.
    static func objectName(frags: Bool) -> String { frags ? "xsk_redirect_frags" : "xsk_redirect" }
    /// The program's name in the object.
    static func programName(frags: Bool) -> String { frags ? "sluice_xsk_redirect_frags" : "sluice_xsk_redirect" }

    /// The text in a NUL-terminated buffer.
    static func cString(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - Attaching and finding

    /// Loads the sluice program and attaches it to `interface`.
    ///
    /// The program is the one built into the package (`BPFObject`). `.native` falls back to
    /// `.generic` when the driver refuses native XDP, and says so through `logger`.
    /// If a sluice program is already attached, it is returned as it is (in its mode, and build),
    /// so calling this twice is harmless; `attachNote` says what differs from what was asked. Another program is refused unless `force` is set, which detaches it.
    /// libxdp tries its multi-program dispatcher first and attaches the program alone when the
    /// dispatcher cannot load (no bpffs, no freplace); `attachNote` then says so.
    ///
    /// - Parameters:
    ///   - interface: the interface name in the calling thread's network namespace.
    ///   - mode: native (driver) or generic (skb) XDP.
    ///   - force: replace another, non-sluice XDP program.
    ///   - frags: load the multi-buffer (`xdp.frags`) build, for jumbo frames or GRO'd packets.
    ///   - logger: where a fallback (native refused, generic used) is reported.
    public static func attach(to interface: String, mode: XDPAttachMode = .native, force: Bool = false,
                              frags: Bool = false, logger: Logger = .disabled) throws(SystemCallError) -> XDPProgram {
        LibraryLog.install()
        let index = try interfaceIndex(interface)
        let existing = try inspect(interface: interface, index: index)
        if let ours = existing.sluice {
            // What was asked and differs from the program attached is said, not silently dropped.
            var differences: [String] = []
            if ours.mode != mode { differences.append("it runs in \(ours.mode.label) mode, not \(mode.label)") }
            if frags && ours.name != programName(frags: true) { differences.append("it is not the multi-buffer (frags) build") }
            let note = differences.isEmpty ? nil
                : "the sluice program already attached stays as it is: " + differences.joined(separator: ", and ")
                    + " (`sluice xdp unload` first to attach another)"
            return try XDPProgram(
                interfaceName: interface, interfaceIndex: index, found: ours, handle: nil, wasAlreadyAttached: true, note: note)
        }
        // Open the object before touching another program, so a bad object leaves it in place.
        let program = try BPFObject.open(named: objectName(frags: frags), programName: programName(frags: frags))
        if let foreign = existing.foreign {
            guard force else {
                program.close()
                let occupant = foreign.isIdentified
                    ? "another XDP program, '\(foreign.name)' (id \(foreign.programID)), is attached in \(foreign.modeLabel) mode"
                    : "an XDP program (id \(foreign.programID)) is attached in \(foreign.modeLabel) mode that this process cannot "
                        + "identify (\(unidentifiedReason))"
                throw SystemCallError(.xdp, operation: "attaching XDP to \(interface)", errno: EBUSY,
                                      hint: occupant + "; attach with force: true to replace it")
            }
            do throws(SystemCallError) {
                logger.notice("replacing another XDP program, as forced",
                              metadata: ["interface": "\(interface)", "program": "\(foreign.name)", "id": "\(foreign.programID)",
                                         "mode": "\(foreign.modeLabel)"])
                try detachForeign(foreign, interface: interface, index: index)
            } catch {
                program.close()
                throw error
            }
        }
        var attachedMode = mode
        LibraryLog.startCapture()
        var result = xdp_program__attach(program.program, index, mode.libxdpMode, 0)
        // Refusals of native mode: no driver support, or one the driver has but not for this
        // link now (veth: ERANGE while its peer's MTU is past a page, ENOSPC while it has fewer
        // receive queues than its peer transmit queues).
        if result < 0 && mode == .native && [EOPNOTSUPP, EINVAL, ERANGE, ENOSPC].contains(-result) {
            let reason = LibraryLog.kernelMessage() ?? String(cString: strerror(-result))
            logger.notice("native XDP refused by the driver; using generic (skb) mode",
                          metadata: ["interface": "\(interface)", "reason": "\(reason)"])
            attachedMode = .generic
            LibraryLog.startCapture()
            result = xdp_program__attach(program.program, index, XDPAttachMode.generic.libxdpMode, 0)
        }
        let log = LibraryLog.stopCapture()
        guard result == 0 else {
            program.close()
            let code = -result
            let kernel = log.last { $0.contains("Kernel error message:") }
                .map { "kernel: " + $0.components(after: "Kernel error message:").trimmed } ?? ""
            let hint = switch code {
            case EBUSY, EEXIST: "another XDP program was attached meanwhile"
            case EOPNOTSUPP: "\(interface) does not support XDP in \(attachedMode.label) mode"
            case EINVAL, ERANGE: "the kernel refused the program on \(interface) (generic mode works everywhere, and an MTU above 3498 needs the multi-buffer (frags) program)"
            default: SystemCallError(.xdp, operation: "", errno: code).hint
            }
            throw SystemCallError(.xdp, operation: "attaching XDP to \(interface)", errno: code,
                                  hint: [hint, kernel].filter { !$0.isEmpty }.joined(separator: "; "))
        }
        var note: String?
        if log.contains(where: { $0.contains("Falling back to loading single prog without dispatcher") }) {
            let why = log.first { $0.contains("load failed") }
                ?? log.first { $0.contains("dispatcher") && !$0.contains("Falling back") && !$0.contains("Generating") && !$0.contains("Loading") }
                ?? "freplace not permitted"
            note = "libxdp dispatcher unavailable (\(why.trimmed)); the program runs alone on \(interface)"
        }
        let id = xdp_program__id(program.program)
        let fellBack = log.contains { $0.contains("Falling back to loading single prog without dispatcher") }
        let viaDispatcher = (try? inspect(interface: interface, index: index).sluice?.viaDispatcher) ?? !fellBack
        do throws(SystemCallError) {
            return try XDPProgram(
                interfaceName: interface, interfaceIndex: index,
                found: Found(programID: id, name: programName(frags: frags), mode: attachedMode, viaDispatcher: viaDispatcher),
                handle: program, wasAlreadyAttached: false, note: note)
        } catch {
            _ = xdp_program__detach(program.program, index, attachedMode.libxdpMode, 0)
            program.close()
            throw error
        }
    }

    /// The sluice program already attached to `interface` (by this or another process), or
    /// `nil` if none is, or the attached program is not sluice's.
    ///
    /// The program is found by the id the interface reports; its maps through the program's
    /// map ids and their names.
    public static func attached(on interface: String) throws(SystemCallError) -> XDPProgram? {
        LibraryLog.install()
        let index = try interfaceIndex(interface)
        guard let ours = try inspect(interface: interface, index: index).sluice else { return nil }
        return try XDPProgram(interfaceName: interface, interfaceIndex: index, found: ours, handle: nil,
                              wasAlreadyAttached: true, note: nil)
    }

    /// Detaches the sluice program on `interface` (in whichever mode it runs).
    ///
    /// - Returns: false if no sluice program was attached (another program is left alone).
    @discardableResult
    public static func detach(from interface: String) throws(SystemCallError) -> Bool {
        LibraryLog.install()
        let index = try interfaceIndex(interface)
        guard let ours = try inspect(interface: interface, index: index).sluice else { return false }
        try detach(ours, interface: interface, index: index)
        return true
    }

    /// Detaches this program from its interface. Does nothing if it is no longer attached.
    ///
    /// A program this process attached on its own (no libxdp dispatcher) is detached through its
    /// descriptor, with CAP_NET_ADMIN alone; any other needs the lookup by id, and CAP_SYS_ADMIN.
    public func detach() throws(SystemCallError) {
        if handle != nil, !viaDispatcher {
            var options = bpf_xdp_attach_opts()
            options.sz = optionsSize(\bpf_xdp_attach_opts.old_prog_fd, Int32.self)
            options.old_prog_fd = programDescriptor   // only if it is still this program
            let result = bpf_xdp_detach(interfaceIndex, mode.netlinkFlags, &options)
            if result == 0 || -result == ENOENT || -result == ENODEV { return }
            // Replaced meanwhile (EEXIST): whatever runs there now is found by id below.
            guard -result == EEXIST else {
                throw SystemCallError(.xdp, operation: "detaching XDP program \(programID) from \(interfaceName)", errno: -result)
            }
        }
        guard let ours = try Self.inspect(interface: interfaceName, index: interfaceIndex).sluice,
              ours.programID == programID else { return }
        try Self.detach(ours, interface: interfaceName, index: interfaceIndex)
    }

    /// A description of what another program attached to an interface looks like.
    public struct Occupant: Sendable, Equatable {
        /// The kernel's program id.
        public var programID: UInt32
        /// The kernel's (possibly cut) program name.
        public var name: String
        /// Its mode; `nil` for hardware offload.
        public var mode: XDPAttachMode?
        /// False when this process could not open the program to read its name (`name` is "?"):
        /// a program another process loaded is opened by id, which needs CAP_SYS_ADMIN. Such a
        /// program may be sluice's, left by a server that was killed.
        public var isIdentified: Bool
    }

    /// Why a program may go unidentified, for messages.
    public static let unidentifiedReason = "opening a program another process loaded needs CAP_SYS_ADMIN, "
        + "and a sluice program left by a server that was killed looks the same"

    /// The non-sluice XDP program attached to `interface`, if there is one (for messages such as
    /// `sluice xdp status`).
    public static func foreignProgram(on interface: String) throws(SystemCallError) -> Occupant? {
        LibraryLog.install()
        let index = try interfaceIndex(interface)
        let state = try inspect(interface: interface, index: index)
        guard state.sluice == nil, let foreign = state.foreign else { return nil }
        return Occupant(programID: foreign.programID, name: foreign.name, mode: foreign.mode, isIdentified: foreign.isIdentified)
    }

    /// Sends libbpf's and libxdp's messages, for the whole process, to `logger` (their warnings
    /// as `.warning`, info as `.info`, debug as `.debug`); until this is called they are dropped.
    /// Every entry point of this module takes them over from stderr; call this before other
    /// libxdp or libbpf calls of your own to keep their output out of stderr too.
    public static func routeLibraryMessages(to logger: Logger = .disabled) {
        LibraryLog.install()
        LibraryLog.logger.withLock { $0 = logger }
    }

    // MARK: - Maps

    /// Steers UDP to `port` into the AF_XDP sockets (or stops steering it).
    public func setPort(_ port: UInt16, enabled: Bool = true) throws(SystemCallError) {
        var key = UInt32(port)
        var value: UInt8 = enabled ? 1 : 0
        if bpf_map_update_elem(portsMap, &key, &value, UInt64(BPF_ANY)) != 0 {
            throw SystemCallError(.xdp, operation: "\(enabled ? "adding" : "removing") UDP port \(port) in the ports map on \(interfaceName)",
                           errno: Glibc.errno)
        }
    }

    /// Steers UDP to `endpoint` into the AF_XDP sockets `owner` inserted (``insertSocket(_:queue:owner:)``),
    /// as a socket bound to it would take it: that address and port, or every address of its
    /// family for `0.0.0.0`, and of both families for `[::]` (dual-stack). Traffic to the host's
    /// other addresses, and frames that arrive on a queue whose socket another owner inserted,
    /// are left to the kernel.
    ///
    /// - Parameters:
    ///   - endpoint: the listen address and port.
    ///   - enabled: `false` takes the listener back (only one `owner` owns).
    ///   - owner: the process that serves it, by default this one. A listener whose owner has
    ///     exited (killed, say) is taken over; one a running process owns is refused
    ///     (`EADDRINUSE`), and removing it leaves it alone.
    public func setListener(_ endpoint: IPEndpoint, enabled: Bool = true, owner: UInt32 = UInt32(getpid())) throws(SystemCallError) {
        guard listenersMap >= 0, queueOwnersMap >= 0 else {
            throw SystemCallError(.xdp, operation: "steering \(endpoint) on \(interfaceName)", errno: EOPNOTSUPP,
                                  hint: "the attached sluice program predates listeners with owners; detach it (sluice xdp unload) and attach again")
        }
        var keys = [Self.listenerKey(endpoint.address, port: endpoint.port)]
        if endpoint.address == .v6(.any) { keys.append(Self.listenerKey(.v4(.any), port: endpoint.port)) }
        // Another process can change the same port's listeners: the summary is derived under a lock.
        let lock = Self.lockListeners()
        defer { if lock >= 0 { close(lock) } }
        // Every key's owner first, so a refusal leaves the map as it was.
        let owners = keys.map { key in
            var key = key
            var current: UInt32 = 0
            return bpf_map_lookup_elem(listenersMap, &key, &current) == 0 ? current : nil
        }
        if enabled, let taken = owners.compactMap({ $0 }).first(where: { $0 != owner && Self.processIsRunning($0) }) {
            throw SystemCallError(.xdp, operation: "steering \(endpoint) on \(interfaceName)", errno: EADDRINUSE,
                                  hint: "process \(taken) serves this address through the XDP program")
        }
        for (var key, current) in zip(keys, owners) {
            guard enabled || current == owner else { continue }
            var value = owner
            let result = enabled ? bpf_map_update_elem(listenersMap, &key, &value, UInt64(BPF_ANY))
                                 : bpf_map_delete_elem(listenersMap, &key)
            if result != 0 && !(Glibc.errno == ENOENT && !enabled) {
                throw SystemCallError(.xdp, operation: "\(enabled ? "adding" : "removing") listener \(endpoint) on \(interfaceName)",
                                      errno: Glibc.errno)
            }
        }
        try summarizeListeners(port: endpoint.port)
    }

    /// Removes the listeners whose owner has exited without taking them back (a server killed
    /// with SIGKILL, say), so the program does not count them as in use.
    public func removeAbandonedListeners() throws(SystemCallError) {
        guard listenersMap >= 0 else { return }
        let lock = Self.lockListeners()
        defer { if lock >= 0 { close(lock) } }
        var ports: Set<UInt16> = []
        for var key in try listenerKeys() {
            var owner: UInt32 = 0
            guard bpf_map_lookup_elem(listenersMap, &key, &owner) == 0, !Self.processIsRunning(owner) else { continue }
            if bpf_map_delete_elem(listenersMap, &key) != 0 && Glibc.errno != ENOENT {
                throw SystemCallError(.xdp, operation: "removing an abandoned listener on \(interfaceName)", errno: Glibc.errno)
            }
            ports.insert(key.port)
        }
        for port in ports { try summarizeListeners(port: port) }
    }

    /// Whether process `id` still runs (one of another user counts: `kill` says EPERM).
    static func processIsRunning(_ id: UInt32) -> Bool {
        guard id > 0, id <= UInt32(Int32.max) else { return false }
        return kill(pid_t(id), 0) == 0 || Glibc.errno == EPERM
    }

    /// Rewrites `port_listeners` for `port` from the `listeners` map: one address per family the
    /// program compares directly; wildcards and further addresses send it to the hash map.
    private func summarizeListeners(port: UInt16) throws(SystemCallError) {
        guard portListenersMap >= 0 else { return }
        var summary = sluice_port_listeners()
        for var key in try listenerKeys() where key.port == port {
            var owner: UInt32 = 0
            guard bpf_map_lookup_elem(listenersMap, &key, &owner) == 0 else { continue }
            switch Self.endpoint(of: key).address {
            case .v4(let address) where address != .any && summary.flags & UInt8(SLUICE_PORT_V4) == 0:
                summary.flags |= UInt8(SLUICE_PORT_V4)
                withUnsafeMutableBytes(of: &summary.v4) { address.store(networkBytesAt: $0.baseAddress!) }
                summary.v4_owner = owner
            case .v6(let address) where address != .any && summary.flags & UInt8(SLUICE_PORT_V6) == 0:
                summary.flags |= UInt8(SLUICE_PORT_V6)
                withUnsafeMutableBytes(of: &summary.v6) { address.store(networkBytesAt: $0.baseAddress!) }
                summary.v6_owner = owner
            default:
                summary.flags |= UInt8(SLUICE_PORT_LOOKUP)
            }
        }
        var key = UInt32(port)
        if bpf_map_update_elem(portListenersMap, &key, &summary, UInt64(BPF_ANY)) != 0 {
            throw SystemCallError(.xdp, operation: "updating the listeners of port \(port) on \(interfaceName)", errno: Glibc.errno)
        }
    }

    /// Runs `body` holding the lock every sluice process of this network namespace takes to
    /// change listeners, so what it finds and what it changes go together: a server attaching
    /// or joining the program and adding its listener, or the last one out deciding the program
    /// is unused and detaching it, is never interleaved with another process doing the same.
    /// The calls `body` makes that take the lock themselves (``setListener(_:enabled:owner:)``,
    /// ``removeAbandonedListeners()``) take it from this thread at once.
    public static func withListenerLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let lock = lockListeners()
        let thread = pid_t(sluice_thread_id())
        // Inside another call of this thread's, the holder stays this thread when this one ends.
        let previous = lockHolder.withLock { holder in
            defer { holder = thread }
            return holder
        }
        defer {
            lockHolder.withLock { $0 = previous == thread ? thread : 0 }
            if lock >= 0 { close(lock) }
        }
        return try body()
    }

    /// The thread inside ``withListenerLock(_:)``, if any: it has the lock already.
    private static let lockHolder = Mutex<pid_t>(0)

    /// An exclusive lock every sluice process of this network namespace (where the interface and
    /// its program are) agrees on, held until the descriptor is closed: the abstract socket name
    /// `sluice-xdp/listeners`, which needs no file, so a dynamic user under `ProtectSystem=strict`
    /// takes it as root does. Waits up to two seconds for it; then goes on unlocked (-1), said.
    /// -1 too in the thread that holds it through ``withListenerLock(_:)``.
    private static func lockListeners() -> Int32 {
        if lockHolder.withLock({ $0 }) == pid_t(sluice_thread_id()) { return -1 }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        while true {
            do {
                return try AbstractSocketName.claim("sluice-xdp/listeners")
            } catch {
                guard error.code == EADDRINUSE, clock.now < deadline else {
                    LibraryLog.logger.withLock { $0 }.warning(
                        "changing XDP listeners without the lock other sluice processes take",
                        metadata: ["reason": "\(error)"])
                    return -1
                }
                usleep(1000)
            }
        }
    }

    /// The listen addresses steered to AF_XDP sockets (`0.0.0.0` and `[::]` for wildcards; a
    /// dual-stack listen shows as both).
    public var listeners: [IPEndpoint] {
        get throws(SystemCallError) {
            try listenerKeys().map(Self.endpoint(of:)).sorted { $0.description < $1.description }
        }
    }

    /// Each listener with the process that serves it, and whether that process still runs (one
    /// killed without taking its listener back left it abandoned: the next server to leave, or
    /// `sluice xdp unload`, removes it).
    public var listenerOwners: [(endpoint: IPEndpoint, owner: UInt32, running: Bool)] {
        get throws(SystemCallError) {
            try listenerKeys().map { key in
                var key = key
                var owner: UInt32 = 0
                _ = bpf_map_lookup_elem(listenersMap, &key, &owner)
                return (Self.endpoint(of: key), owner, Self.processIsRunning(owner))
            }.sorted { $0.endpoint.description < $1.endpoint.description }
        }
    }

    /// The keys of the `listeners` map (the keeper's, of family 0, aside).
    private func listenerKeys() throws(SystemCallError) -> [sluice_listener_key] {
        try keys(of: listenersMap, named: "listeners").filter { $0.family != 0 }
    }

    /// Whether the program stays when the last server using it leaves: attached by `sluice xdp
    /// load`, it is there until `sluice xdp unload`. Kept as a `listeners` entry of family 0,
    /// which no frame's lookup matches.
    public var isKept: Bool {
        get throws(SystemCallError) {
            guard listenersMap >= 0 else { return false }
            var key = sluice_listener_key()
            var owner: UInt32 = 0
            return bpf_map_lookup_elem(listenersMap, &key, &owner) == 0
        }
    }

    /// Marks the program as one that stays when the last server using it leaves (see ``isKept``).
    public func keep() throws(SystemCallError) {
        guard listenersMap >= 0 else {
            throw SystemCallError(.xdp, operation: "keeping the XDP program on \(interfaceName)", errno: EOPNOTSUPP,
                                  hint: "the attached sluice program predates listeners; detach it (sluice xdp unload) and attach again")
        }
        var key = sluice_listener_key()
        var owner: UInt32 = 0
        if bpf_map_update_elem(listenersMap, &key, &owner, UInt64(BPF_ANY)) != 0 {
            throw SystemCallError(.xdp, operation: "keeping the XDP program on \(interfaceName)", errno: Glibc.errno)
        }
    }

    /// The keys of a map keyed as listeners (`listeners`, `local_addresses`).
    private func keys(of map: Int32, named name: String) throws(SystemCallError) -> [sluice_listener_key] {
        guard map >= 0 else { return [] }
        var found: [sluice_listener_key] = []
        while true {
            var next = sluice_listener_key()
            let result: Int32
            if var key = found.last {
                result = bpf_map_get_next_key(map, &key, &next)
            } else {
                result = bpf_map_get_next_key(map, nil, &next)
            }
            if result != 0 {
                if Glibc.errno == ENOENT { break }
                throw SystemCallError(.xdp, operation: "reading the \(name) map on \(interfaceName)", errno: Glibc.errno)
            }
            found.append(next)
        }
        return found
    }

    /// Sets what the program leaves to the kernel as another host's or another device's (see
    /// ``XDPLinkFilter``). The filter is the interface's, shared by every listener on it; the
    /// VLAN IDs given are added to those already set, the addresses replace them (one deleted
    /// from the interface is the kernel's again: forwarded by a router, say, not dropped here).
    public func setLinkFilter(_ filter: XDPLinkFilter) throws(SystemCallError) {
        guard linkMap >= 0, vlanDevicesMap >= 0, localAddressesMap >= 0 else {
            throw SystemCallError(.xdp, operation: "setting the link filter on \(interfaceName)", errno: EOPNOTSUPP,
                                  hint: "the attached sluice program predates the link filter; detach it and attach again")
        }
        func update(_ map: Int32, _ key: UnsafeRawPointer, _ value: UnsafeRawPointer, _ what: String) throws(SystemCallError) {
            if bpf_map_update_elem(map, key, value, UInt64(BPF_ANY)) != 0 {
                throw SystemCallError(.xdp, operation: "setting \(what) in the link filter on \(interfaceName)", errno: Glibc.errno)
            }
        }
        var present: UInt8 = 1
        for id in filter.vlanDeviceIDs where id < 4096 {
            var key = UInt32(id)
            try update(vlanDevicesMap, &key, &present, "VLAN \(id)")
        }
        var wanted: Set<[UInt8]> = []
        for address in filter.localAddresses ?? [] {
            var key = Self.listenerKey(address, port: 0)
            try update(localAddressesMap, &key, &present, "address \(address)")
            wanted.insert(withUnsafeBytes(of: key, Array.init))
        }
        if filter.localAddresses != nil {
            for var key in try keys(of: localAddressesMap, named: "local_addresses") where !wanted.contains(withUnsafeBytes(of: key, Array.init)) {
                if bpf_map_delete_elem(localAddressesMap, &key) != 0 && Glibc.errno != ENOENT {
                    throw SystemCallError(.xdp, operation: "removing a deleted address from the link filter on \(interfaceName)",
                                          errno: Glibc.errno)
                }
            }
        }
        var value = sluice_link_filter()
        if let mac = filter.localMAC {
            withUnsafeMutableBytes(of: &value.mac) { mac.store(networkBytesAt: $0.baseAddress!) }
            value.checks_mac = 1
        }
        value.checks_addresses = filter.localAddresses == nil ? 0 : 1
        var zero: UInt32 = 0
        try update(linkMap, &zero, &value, "the MAC")
        if let maximumFrame = filter.maximumFrame, frameLimitMap >= 0 {
            // Only ever lowered: servers sharing the program may have frames of other sizes,
            // and a frame one of them could not hold must go to the kernel for all of them.
            var current: UInt32 = 0
            _ = bpf_map_lookup_elem(frameLimitMap, &zero, &current)
            var limit = UInt32(clamping: maximumFrame)
            if current != 0 { limit = min(limit, current) }
            try update(frameLimitMap, &zero, &limit, "the frame limit")
        }
    }

    static func listenerKey(_ address: IPAddress, port: UInt16) -> sluice_listener_key {
        var key = sluice_listener_key()
        key.port = port
        withUnsafeMutableBytes(of: &key.addr) { bytes in
            switch address {
            case .v4(let a):
                key.family = 4
                a.store(networkBytesAt: bytes.baseAddress!)
            case .v6(let a):
                key.family = 6
                a.store(networkBytesAt: bytes.baseAddress!)
            }
        }
        return key
    }

    static func endpoint(of key: sluice_listener_key) -> IPEndpoint {
        var addr = key.addr
        let address: IPAddress = withUnsafeBytes(of: &addr) { bytes in
            key.family == 4 ? .v4(IPv4Address(networkBytesAt: bytes.baseAddress!)) : .v6(IPv6Address(networkBytesAt: bytes.baseAddress!))
        }
        return IPEndpoint(address: address, port: key.port)
    }

    /// The UDP ports steered to AF_XDP sockets on every address, ascending.
    public var ports: [UInt16] {
        get throws(SystemCallError) {
            let size = 65536
            var keys = [UInt32](repeating: 0, count: size)
            var values = [UInt8](repeating: 0, count: size)
            var count = UInt32(size)
            var outBatch: UInt32 = 0
            var options = bpf_map_batch_opts()
            options.sz = optionsSize(\bpf_map_batch_opts.flags, UInt64.self)
            let result = bpf_map_lookup_batch(portsMap, nil, &outBatch, &keys, &values, &count, &options)
            if result == 0 || Glibc.errno == ENOENT {
                return (0..<Int(count)).compactMap { values[$0] != 0 ? UInt16(truncatingIfNeeded: keys[$0]) : nil }
            }
            // Older kernels lack batch lookups on arrays: one lookup per port.
            var ports: [UInt16] = []
            for port in 0..<UInt32(size) {
                var key = port
                var value: UInt8 = 0
                if bpf_map_lookup_elem(portsMap, &key, &value) != 0 {
                    throw SystemCallError(.xdp, operation: "reading the ports map on \(interfaceName)", errno: Glibc.errno)
                }
                if value != 0 { ports.append(UInt16(port)) }
            }
            return ports
        }
    }

    /// Directs steered frames that arrive on `queue` to the AF_XDP socket `descriptor`: those to
    /// a port in the `ports` map, and those to the listeners of `owner` (by default this process;
    /// see ``setListener(_:enabled:owner:)``).
    public func insertSocket(_ descriptor: Int32, queue: UInt32, owner: UInt32 = UInt32(getpid())) throws(SystemCallError) {
        var key = queue
        var value = descriptor
        if bpf_map_update_elem(xsksMap, &key, &value, UInt64(BPF_ANY)) != 0 {
            let code = Glibc.errno
            throw SystemCallError(
                .xdp, operation: "adding AF_XDP socket \(descriptor) for queue \(queue) to xsks_map on \(interfaceName)", errno: code,
                hint: code == E2BIG || code == EINVAL
                    ? "the queue must be below 256 and the descriptor a bound AF_XDP socket" : nil)
        }
        do {
            try setQueueOwner(queue, owner)
        } catch {
            _ = bpf_map_delete_elem(xsksMap, &key)
            throw error
        }
    }

    /// Stops directing frames on `queue` to a socket (they are passed to the kernel instead).
    public func removeSocket(queue: UInt32) throws(SystemCallError) {
        var key = queue
        if bpf_map_delete_elem(xsksMap, &key) != 0 && Glibc.errno != ENOENT {
            throw SystemCallError(.xdp, operation: "removing the AF_XDP socket for queue \(queue) from xsks_map on \(interfaceName)",
                           errno: Glibc.errno)
        }
        try setQueueOwner(queue, 0)
    }

    private func setQueueOwner(_ queue: UInt32, _ owner: UInt32) throws(SystemCallError) {
        guard queueOwnersMap >= 0 else { return }
        var key = queue
        var value = owner
        if bpf_map_update_elem(queueOwnersMap, &key, &value, UInt64(BPF_ANY)) != 0 {
            throw SystemCallError(.xdp, operation: "setting the owner of queue \(queue) on \(interfaceName)", errno: Glibc.errno)
        }
    }

    /// The verdict counters, summed over CPUs.
    public func verdicts() throws(SystemCallError) -> XDPVerdicts {
        let cpus = libbpf_num_possible_cpus()
        guard cpus > 0 else {
            throw SystemCallError(.xdp, operation: "counting possible CPUs for the verdicts map", errno: -cpus)
        }
        var sums = [UInt64](repeating: 0, count: Self.verdictCount)
        var values = [UInt64](repeating: 0, count: Int(cpus))
        for slot in 0..<Self.verdictCount {
            var key = UInt32(slot)
            if bpf_map_lookup_elem(verdictsMap, &key, &values) != 0 {
                if Glibc.errno == ENOENT { break }
                throw SystemCallError(.xdp, operation: "reading the verdicts map on \(interfaceName)", errno: Glibc.errno)
            }
            sums[slot] = values.reduce(0, &+)
        }
        var verdicts = XDPVerdicts()
        verdicts.redirected = sums[0]
        verdicts.passedNotUDP = sums[1]
        verdicts.passedPort = sums[2]
        verdicts.passedNoSocket = sums[3]
        verdicts.passedFragment = sums[4]
        verdicts.passedMalformed = sums[5]
        verdicts.passedNotOurs = sums[6]
        verdicts.passedOptions = sums[7]
        verdicts.passedTooLarge = sums[8]
        return verdicts
    }

    /// The descriptor of the `xsks_map` (XSKMAP, queue → AF_XDP socket), e.g. for
    /// `xsk_socket__update_xskmap`. Owned by this instance.
    public var xsksMapDescriptor: Int32 { xsksMap }

    deinit {
        close(programDescriptor)
        close(xsksMap)
        close(portsMap)
        for map in [listenersMap, portListenersMap, linkMap, vlanDevicesMap, localAddressesMap, queueOwnersMap, frameLimitMap]
            where map >= 0 {
            close(map)
        }
        close(verdictsMap)
        handle?.close()
    }

    // MARK: - Internals

    /// A sluice program found on an interface.
    struct Found {
        var programID: UInt32
        var name: String
        var mode: XDPAttachMode
        var viaDispatcher: Bool
    }

    /// Another program found on an interface.
    struct Foreign {
        var programID: UInt32
        var name: String
        var mode: XDPAttachMode?
        var viaDispatcher: Bool
        var isIdentified = true
        var modeLabel: String { mode?.label ?? "hardware offload" }
    }

    /// What runs on an interface.
    struct State {
        var sluice: Found?
        var foreign: Foreign?
    }

    private init(interfaceName: String, interfaceIndex: Int32, found: Found, handle: BPFObject?,
                 wasAlreadyAttached: Bool, note: String?) throws(SystemCallError) {
        let operation = "opening the maps of XDP program \(found.programID) on \(interfaceName)"
        let program: Int32
        let maps: [String: Int32]
        if let handle {
            // Loaded here: its descriptors are at hand, so no lookup by id (which needs CAP_SYS_ADMIN).
            program = dup(xdp_program__fd(handle.program))
            guard program >= 0 else { throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno) }
            maps = Self.mapDescriptors(of: handle)
        } else {
            program = bpf_prog_get_fd_by_id(found.programID)
            guard program >= 0 else {
                throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno,
                                      hint: Glibc.errno == EPERM ? "reaching a program this process did not load needs CAP_SYS_ADMIN" : nil)
            }
            do {
                maps = try Self.openMaps(ofProgram: program, operation: operation)
            } catch {
                close(program)
                throw error
            }
        }
        guard let xsks = maps["xsks_map"], let ports = maps["ports"], let verdicts = maps["verdicts"] else {
            maps.values.forEach { close($0) }
            close(program)
            throw SystemCallError(.xdp, operation: operation, errno: ENOENT,
                           hint: "the program lacks the xsks_map, ports or verdicts map")
        }
        self.interfaceName = interfaceName
        self.interfaceIndex = interfaceIndex
        self.mode = found.mode
        self.programID = found.programID
        self.viaDispatcher = found.viaDispatcher
        self.wasAlreadyAttached = wasAlreadyAttached
        self.attachNote = note
        self.programDescriptor = program
        self.xsksMap = xsks
        self.portsMap = ports
        self.listenersMap = maps["listeners"] ?? -1
        self.queueOwnersMap = maps["queue_owners"] ?? -1
        self.portListenersMap = maps["port_listeners"] ?? -1
        self.linkMap = maps["link"] ?? -1
        self.vlanDevicesMap = maps["vlan_devices"] ?? -1
        self.localAddressesMap = maps["local_addresses"] ?? -1
        self.frameLimitMap = maps["frame_limit"] ?? -1
        self.verdictsMap = verdicts
        self.handle = handle
    }

    /// The index of `interface`, or an error that says it does not exist here.
    static func interfaceIndex(_ interface: String) throws(SystemCallError) -> Int32 {
        let index = if_nametoindex(interface)
        guard index != 0 else {
            let code = Glibc.errno
            throw SystemCallError(
                .xdp, operation: "finding interface \(interface)", errno: code == 0 ? ENODEV : code,
                hint: "no interface named '\(interface)' in this network namespace (see `ip link`)")
        }
        return Int32(index)
    }

    /// Name and map ids of a loaded program.
    static func programInfo(descriptor: Int32) -> (name: String, mapIDs: [UInt32])? {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(descriptor, &info, &length) == 0 else { return nil }
        let name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let count = Int(info.nr_map_ids)
        guard count > 0 else { return (name, []) }
        var ids = [UInt32](repeating: 0, count: count)
        let ok = ids.withUnsafeMutableBufferPointer { buffer -> Bool in
            var second = bpf_prog_info()
            second.nr_map_ids = UInt32(count)
            second.map_ids = UInt64(UInt(bitPattern: buffer.baseAddress))
            var length = UInt32(MemoryLayout<bpf_prog_info>.size)
            return bpf_obj_get_info_by_fd(descriptor, &second, &length) == 0
        }
        return ok ? (name, ids) : (name, [])
    }

    /// Copies of the map descriptors of a program this process loaded, by name.
    private static func mapDescriptors(of handle: BPFObject) -> [String: Int32] {
        var maps: [String: Int32] = [:]
        guard let object = xdp_program__bpf_obj(handle.program) else { return maps }
        for name in mapNames + optionalMapNames {
            let fd = bpf_object__find_map_fd_by_name(object, name)
            if fd >= 0 { maps[name] = dup(fd) }
        }
        return maps
    }

    /// Opens the maps of a program by id, keyed by name.
    private static func openMaps(ofProgram program: Int32, operation: String) throws(SystemCallError) -> [String: Int32] {
        guard let info = programInfo(descriptor: program) else { throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno) }
        var maps: [String: Int32] = [:]
        for id in info.mapIDs {
            let fd = bpf_map_get_fd_by_id(id)
            guard fd >= 0 else {
                let code = Glibc.errno
                maps.values.forEach { close($0) }
                throw SystemCallError(.xdp, operation: operation, errno: code)
            }
            var mapInfo = bpf_map_info()
            var length = UInt32(MemoryLayout<bpf_map_info>.size)
            let name = bpf_obj_get_info_by_fd(fd, &mapInfo, &length) == 0
                ? withUnsafeBytes(of: mapInfo.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } : ""
            if (mapNames.contains(name) || optionalMapNames.contains(name)) && maps[name] == nil { maps[name] = fd } else { close(fd) }
        }
        return maps
    }

    /// Whether the program with `id` is sluice's (name and maps), its name, and whether it could
    /// be opened at all (by id: CAP_SYS_ADMIN).
    static func identify(programID id: UInt32) -> (isSluice: Bool, name: String, isIdentified: Bool) {
        let fd = bpf_prog_get_fd_by_id(id)
        guard fd >= 0 else { return (false, "?", false) }
        defer { close(fd) }
        guard let info = programInfo(descriptor: fd) else { return (false, "?", false) }
        guard info.name.hasPrefix(kernelProgramName) else { return (false, info.name, true) }
        var names: Set<String> = []
        for mapID in info.mapIDs {
            let map = bpf_map_get_fd_by_id(mapID)
            guard map >= 0 else { continue }
            var mapInfo = bpf_map_info()
            var length = UInt32(MemoryLayout<bpf_map_info>.size)
            if bpf_obj_get_info_by_fd(map, &mapInfo, &length) == 0 {
                names.insert(withUnsafeBytes(of: mapInfo.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
            }
            close(map)
        }
        return (names.isSuperset(of: mapNames), info.name, true)
    }

    /// What XDP programs run on an interface, and whether one is sluice's.
    static func inspect(interface: String, index: Int32) throws(SystemCallError) -> State {
        var options = bpf_xdp_query_opts()
        options.sz = optionsSize(\bpf_xdp_query_opts.attach_mode, UInt8.self)
        let result = bpf_xdp_query(index, 0, &options)
        guard result == 0 else {
            throw SystemCallError(.xdp, operation: "querying the XDP program on \(interface)", errno: -result)
        }
        var state = State()
        let slots: [(UInt32, XDPAttachMode?)] = [
            (options.drv_prog_id, .native), (options.skb_prog_id, .generic), (options.hw_prog_id, nil),
        ]
        for (id, mode) in slots where id != 0 {
            let (isSluice, name, isIdentified) = identify(programID: id)
            if isSluice, let mode {
                state.sluice = state.sluice ?? Found(programID: id, name: name, mode: mode, viaDispatcher: false)
                continue
            }
            if name == "xdp_dispatcher", let mode {
                // libxdp's dispatcher: look at its component programs.
                var sawSluice = false
                var firstOther: (UInt32, String)?
                if let multi = xdp_multiprog__get_from_ifindex(index), libxdp_get_error(UnsafeRawPointer(multi)) == 0 {
                    var component = xdp_multiprog__next_prog(nil, multi)
                    while let current = component {
                        let componentID = xdp_program__id(current)
                        if identify(programID: componentID).isSluice, state.sluice == nil {
                            state.sluice = Found(programID: componentID, name: String(cString: xdp_program__name(current)),
                                                 mode: mode, viaDispatcher: true)
                            sawSluice = true
                        } else if firstOther == nil {
                            firstOther = (componentID, String(cString: xdp_program__name(current)))
                        }
                        component = xdp_multiprog__next_prog(current, multi)
                    }
                    xdp_multiprog__close(multi)
                }
                if !sawSluice && state.foreign == nil {
                    state.foreign = Foreign(programID: firstOther?.0 ?? id, name: firstOther?.1 ?? name, mode: mode,
                                            viaDispatcher: true)
                }
                continue
            }
            if state.foreign == nil {
                state.foreign = Foreign(programID: id, name: name, mode: mode, viaDispatcher: false, isIdentified: isIdentified)
            }
        }
        return state
    }

    /// Detaches a sluice program found on an interface.
    private static func detach(_ found: Found, interface: String, index: Int32) throws(SystemCallError) {
        let operation = "detaching XDP program \(found.programID) from \(interface)"
        if found.viaDispatcher {
            guard let program = xdp_program__from_id(found.programID),
                  libxdp_get_error(UnsafeRawPointer(program)) == 0 else {
                throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno)
            }
            defer { xdp_program__close(program) }
            let result = xdp_program__detach(program, index, found.mode.libxdpMode, 0)
            if result < 0 { throw SystemCallError(.xdp, operation: operation, errno: -result) }
            return
        }
        let fd = bpf_prog_get_fd_by_id(found.programID)
        guard fd >= 0 else { throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno) }
        defer { close(fd) }
        var options = bpf_xdp_attach_opts()
        options.sz = optionsSize(\bpf_xdp_attach_opts.old_prog_fd, Int32.self)
        options.old_prog_fd = fd   // only if it is still this program
        let result = bpf_xdp_detach(index, found.mode.netlinkFlags, &options)
        if result < 0 && -result != ENOENT {
            throw SystemCallError(.xdp, operation: operation, errno: -result)
        }
    }

    /// Detaches another program for `--force`.
    private static func detachForeign(_ foreign: Foreign, interface: String, index: Int32) throws(SystemCallError) {
        let operation = "detaching the XDP program '\(foreign.name)' (id \(foreign.programID)) from \(interface) to replace it"
        if foreign.viaDispatcher {
            guard let multi = xdp_multiprog__get_from_ifindex(index), libxdp_get_error(UnsafeRawPointer(multi)) == 0 else {
                throw SystemCallError(.xdp, operation: operation, errno: Glibc.errno)
            }
            defer { xdp_multiprog__close(multi) }
            let result = xdp_multiprog__detach(multi)
            if result < 0 { throw SystemCallError(.xdp, operation: operation, errno: -result) }
            return
        }
        let flags = foreign.mode?.netlinkFlags ?? UInt32(XDP_FLAGS_HW_MODE)
        let result = bpf_xdp_detach(index, flags, nil)
        if result < 0 { throw SystemCallError(.xdp, operation: operation, errno: -result) }
    }
}

/// Takes libbpf's and libxdp's messages (both libraries print to stderr unless told otherwise):
/// they go to the logger set with ``XDPProgram/routeLibraryMessages(to:)``, dropped until then;
/// while an attach runs, warnings and info lines are also kept so the attach can say in one line
/// what the kernel answered.
enum LibraryLog {
    private static let captured = Mutex<[String]?>(nil)
    static let logger = Mutex<Logger>(.disabled)
    private static let installed: Bool = {
        _ = libbpf_set_print { level, format, arguments in
            LibraryLog.handle(level: Int(level.rawValue), format: format, arguments: arguments, prefix: "libbpf")
        }
        _ = libxdp_set_print { level, format, arguments in
            LibraryLog.handle(level: Int(level.rawValue), format: format, arguments: arguments, prefix: "libxdp")
        }
        return true
    }()

    /// Installs the handler (once per process).
    static func install() { _ = installed }

    /// Starts keeping warning and info lines (clearing earlier ones).
    static func startCapture() { captured.withLock { $0 = [] } }

    /// Stops keeping lines and returns those kept.
    static func stopCapture() -> [String] { captured.withLock { lines in defer { lines = nil }; return lines ?? [] } }

    /// The kernel's extended error message seen during the current capture, e.g.
    /// "Underlying driver does not support XDP in native mode".
    static func kernelMessage() -> String? {
        captured.withLock { lines in
            lines?.last { $0.contains("Kernel error message:") }.map { $0.components(after: "Kernel error message:") }
        }
    }

    private static func handle(level: Int, format: UnsafePointer<CChar>?, arguments: CVaListPointer?, prefix: String) -> Int32 {
        // 0 = warning, 1 = info, 2 = debug in both libraries. Their warnings are mostly about
        // fallbacks they handle themselves (no bpffs, no dispatcher): info here, and what
        // matters comes back in Sluice's own errors and notices.
        let logLevel: Logger.Level = level <= 1 ? .info : .debug
        let logger = Self.logger.withLock { $0 }
        let capturing = captured.withLock { $0 != nil }
        guard let format, let arguments, level <= 1 && capturing || logger.logLevel <= logLevel else { return 0 }
        var buffer = [CChar](repeating: 0, count: 1024)
        _ = vsnprintf(&buffer, buffer.count, format, arguments)
        var line = XDPProgram.cString(buffer).trimmed
        if line.hasPrefix("\(prefix): ") { line.removeFirst(prefix.count + 2) }
        if level <= 1 { captured.withLock { $0?.append(line) } }
        logger.log(level: logLevel, "\(line)", metadata: ["library": "\(prefix)"])
        return 0
    }
}

extension String {
    /// Without leading and trailing whitespace and newlines.
    fileprivate var trimmed: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }

    /// The text after the first `marker`, trimmed (the whole string if there is none).
    fileprivate func components(after marker: String) -> String {
        let text = Array(utf8), needle = Array(marker.utf8)
        guard !needle.isEmpty, text.count >= needle.count else { return trimmed }
        for start in 0...(text.count - needle.count) where Array(text[start..<start + needle.count]) == needle {
            return String(decoding: text[(start + needle.count)...], as: UTF8.self).trimmed
        }
        return trimmed
    }
}

/// The `sz` of a libbpf/libxdp options struct: the end of its last field, not its C size.
/// libbpf rejects (EINVAL, "has non-zero extra bytes") a struct whose tail padding is not zero,
/// and Swift does not zero padding; a size that stops at the last field leaves padding out.
func optionsSize<Options, Field>(_ field: KeyPath<Options, Field>, _: Field.Type) -> Int {
    MemoryLayout<Options>.offset(of: field)! + MemoryLayout<Field>.size
}
