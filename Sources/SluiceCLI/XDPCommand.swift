import ArgumentParser
import SluiceCore
import SluicePackets
import SluiceSystem
import SluiceXDP
#if canImport(Glibc)
import Glibc
#endif

extension XDPAttachMode: ExpressibleByArgument {}

/// `sluice xdp load|status|unload`: the XDP program that steers UDP ports into AF_XDP sockets.
struct XDPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xdp",
        abstract: "Load, inspect and unload sluice's XDP program (steers chosen UDP ports to AF_XDP sockets).",
        subcommands: [XDPLoad.self, XDPStatus.self, XDPUnload.self]
    )
}

/// Options `xdp load` and `xdp unload` take.
struct XDPInterfaceOptions: ParsableArguments {
    @Option(help: "The interface, e.g. veth1.")
    var dev: String

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, in-process (keeps /sys/fs/bpf visible).")
    var netns: String?

    /// Enters the namespace, if one was given. Must run before anything touches the network.
    func enterNamespace() throws {
        if let netns { try reporting { () throws(SystemCallError) in try NetworkNamespace.enter(netns) } }
    }
}

/// Runs `body`, turning an `SystemCallError` into one "sluice: error: ..." line on stderr and exit code 1.
/// The `xdp` commands have no backend to pick: advice to pick another is left out.
func reporting<T>(_ body: () throws(SystemCallError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        writeToStandardError("sluice: error: \(error.terminalDescription(withoutBackend: nil))\n")
        throw ExitCode(1)
    }
}

/// Formats a port list for people: "53, 9000" or "none".
/// Ports in order, each once, runs of three or more as a range ("53, 9000-9099"): 1-65535 is
/// one word, not 65,535.
func describePorts(_ ports: [UInt16]) -> String {
    var parts: [String] = []
    var run: ClosedRange<UInt16>?
    func flush() {
        guard let run else { return }
        parts += run.count >= 3 ? ["\(run.lowerBound)-\(run.upperBound)"] : run.map(String.init)
    }
    for port in Set(ports).sorted() {
        if let current = run, port == current.upperBound + 1 { run = current.lowerBound...port; continue }
        flush()
        run = port...port
    }
    flush()
    return parts.isEmpty ? "none" : parts.joined(separator: ", ")
}

struct XDPLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Attach sluice's XDP program to an interface and steer the given UDP ports (the program stays after exit).")

    @OptionGroup var target: XDPInterfaceOptions

    @Option(help: "XDP mode: native (falls back to generic when the driver refuses) or generic.")
    var mode: XDPAttachMode = .native

    @Option(help: "UDP destination ports to steer to AF_XDP sockets, e.g. 53,9000 or 9000-9003; replaces the current set.")
    var ports: String = ""

    @Flag(help: "Replace another (non-sluice) XDP program attached to the interface.")
    var force = false

    @Flag(help: "Load the multi-buffer (xdp.frags) build, for MTUs above one page.")
    var frags = false

    func validate() throws { let _: [UInt16] = try parseNumberList(ports, of: "port", in: 1...65535, limit: 65535, allowsEmpty: true) }

    func run() throws {
        try target.enterNamespace()
        let wanted = Set<UInt16>(try parseNumberList(ports, of: "port", in: 1...65535, limit: 65535, allowsEmpty: true))
        // Under the listener lock, as servers attach and leave: a server stopping now cannot
        // find the program unused between the attach and the ports.
        let program = try reporting { () throws(SystemCallError) in
            try XDPProgram.withListenerLock { () throws(SystemCallError) -> XDPProgram in
                let program = try XDPProgram.attach(to: target.dev, mode: mode, force: force, frags: frags, logger: .terminal)
                try program.keep()
                let current = Set(try program.ports)
                for port in current where !wanted.contains(port) { try program.setPort(port, enabled: false) }
                for port in wanted where !current.contains(port) { try program.setPort(port) }
                return program
            }
        }
        if let note = program.attachNote { print("sluice xdp: \(note)") }
        let modeText = program.mode == .native ? "native" : "generic (skb)"
        if program.wasAlreadyAttached {
            print("sluice xdp: program \(program.programID) already attached to \(target.dev) in \(modeText) mode; "
                  + "steered UDP ports now: \(describePorts(Array(wanted)))")
        } else {
            print("sluice xdp: program \(program.programID) attached to \(target.dev) in \(modeText) mode; "
                  + "steering UDP ports: \(describePorts(Array(wanted)))")
        }
    }
}

struct XDPStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show sluice's XDP program on an interface, or on every interface that has one: id, mode, steered ports, verdict counters.",
        discussion: "With --json, one object (schema: Benchmarks/sluice-xdp-status.schema.json).")

    @Option(help: "The interface, e.g. veth1 (default: every interface of the namespace with a sluice program).")
    var dev: String?

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, in-process (keeps /sys/fs/bpf visible).")
    var netns: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// What `xdp status` found on one interface.
    struct Entry: Encodable {
        /// Sluice's program there.
        struct Program: Encodable {
            var programId: UInt32
            var mode: String
            var ports: [UInt16]
            var listeners: [String]
            var verdicts: [String: UInt64]
        }

        /// Another program there.
        struct Other: Encodable {
            var programId: UInt32
            var name: String
            var mode: String
            /// False when this process could not open it (CAP_SYS_ADMIN): it may be sluice's.
            var identified: Bool
        }

        var interface: String
        var sluiceProgram: Program?
        var otherProgram: Other?
    }

    func run() throws {
        if let netns { try reporting { () throws(SystemCallError) in try NetworkNamespace.enter(netns) } }
        let names = dev.map { [$0] } ?? Self.interfaceNames()
        var entries: [Entry] = []
        for name in names {
            let entry = try reporting { () throws(SystemCallError) in try Self.inspect(name) }
            if dev != nil || entry.sluiceProgram != nil || entry.otherProgram?.identified == false { entries.append(entry) }
        }
        // A program this process cannot open may be sluice's: the answer is not known, so not 0.
        let unknown = entries.contains { $0.otherProgram?.identified == false }
        if json {
            try printJSON(["interfaces": entries])
        } else {
            if entries.isEmpty { print("no interface in this namespace has a sluice XDP program") }
            for entry in entries { print(Self.describe(entry)) }
        }
        if unknown { throw ExitCode(1) }
    }

    /// Every interface of the calling thread's network namespace (`if_nameindex`: netlink, so
    /// right after `setns` too, unlike /sys/class/net).
    static func interfaceNames() -> [String] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var names: [String] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            names.append(String(cString: name))
            entry += 1
        }
        return names
    }

    static func inspect(_ name: String) throws(SystemCallError) -> Entry {
        var entry = Entry(interface: name)
        if let program = try XDPProgram.attached(on: name) {
            entry.sluiceProgram = Entry.Program(
                programId: program.programID, mode: program.mode.rawValue, ports: try program.ports,
                listeners: try program.listenerOwners.map { listener in
                    "\(listener.endpoint) (pid \(listener.owner)"
                        + (listener.running ? ")" : " exited: abandoned; the next server to stop, or sluice xdp unload, removes it)")
                },
                verdicts: Dictionary(uniqueKeysWithValues: try program.verdicts().fields))
        } else if let other = try XDPProgram.foreignProgram(on: name) {
            entry.otherProgram = Entry.Other(programId: other.programID, name: other.name, mode: other.mode?.rawValue ?? "offload",
                                             identified: other.isIdentified)
        }
        return entry
    }

    static func describe(_ entry: Entry) -> String {
        guard let program = entry.sluiceProgram else {
            if let other = entry.otherProgram, !other.identified {
                return "\(entry.interface): an XDP program is attached (id \(other.programId), \(other.mode) mode) that this process "
                    + "cannot identify: \(XDPProgram.unidentifiedReason); run as root to see it"
            }
            if let other = entry.otherProgram {
                return "\(entry.interface): no sluice XDP program attached; another program is: '\(other.name)' (id \(other.programId), \(other.mode) mode)"
            }
            return "\(entry.interface): no XDP program attached"
        }
        let verdicts = XDPVerdicts.fieldNames.map { "\($0) \(program.verdicts[$0] ?? 0)" }.joined(separator: ", ")
        return """
            \(entry.interface): sluice XDP program id \(program.programId), mode \(program.mode)
              ports: \(describePorts(program.ports))
              listeners: \(program.listeners.isEmpty ? "none" : program.listeners.joined(separator: ", "))
              verdicts: \(verdicts)
            """
    }
}

struct XDPUnload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unload", abstract: "Detach sluice's XDP program from an interface (other programs are left alone).")

    @OptionGroup var target: XDPInterfaceOptions

    @Flag(help: "Detach it even while sluice servers steer listen addresses through it (they stop with an error).")
    var force = false

    func run() throws {
        try target.enterNamespace()
        let existing = try reporting { () throws(SystemCallError) in try XDPProgram.attached(on: target.dev) }
        guard let existing else {
            if let other = try reporting({ () throws(SystemCallError) in try XDPProgram.foreignProgram(on: target.dev) }) {
                guard other.isIdentified else {
                    writeToStandardError("sluice: error: cannot tell whether the XDP program on \(target.dev) (id \(other.programID)) "
                                         + "is sluice's: \(XDPProgram.unidentifiedReason); run as root, or remove whatever "
                                         + "it is with `ip link set dev \(target.dev) \(other.mode?.ipLinkKeyword ?? "xdp") off`\n")
                    throw ExitCode(1)
                }
                print("\(target.dev): no sluice XDP program attached, nothing to unload (another program, '\(other.name)' "
                      + "id \(other.programID), is left alone; `ip link set dev \(target.dev) \(other.mode?.ipLinkKeyword ?? "xdp") off` removes it)")
            } else {
                print("\(target.dev): no sluice XDP program attached, nothing to unload")
            }
            return
        }
        // Listeners of servers that were killed do not count; those of running ones do.
        // The check and the detach under the listener lock: no server joins in between.
        let listeners = try reporting { () throws(SystemCallError) in
            try XDPProgram.withListenerLock { () throws(SystemCallError) -> [IPEndpoint] in
                try existing.removeAbandonedListeners()
                let listeners = try existing.listeners
                if listeners.isEmpty || force { try existing.detach() }
                return listeners
            }
        }
        if !listeners.isEmpty && !force {
            writeToStandardError("sluice: error: running sluice servers steer \(listeners.map(\.description).joined(separator: ", ")) "
                                 + "through the program on \(target.dev); stop them first (they remove it), or pass --force\n")
            throw ExitCode(1)
        }
        print("sluice xdp: detached program \(existing.programID) (\(existing.mode.rawValue) mode) from \(target.dev)")
    }
}
