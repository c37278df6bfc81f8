import ArgumentParser
import Sluice
import SluiceCore

/// `sluice netns up|down`: the two-namespace veth topology that tests, demos and benchmarks use.
struct NetnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netns",
        abstract: "Make or remove two network namespaces joined by a veth pair (198.18.0.1 <-> 198.18.0.2, 2001:2::1 <-> 2001:2::2).",
        subcommands: [Up.self, Down.self]
    )

    /// The suffix used when none is given, so a bare `up` and a bare `down` pair up.
    static let defaultSuffix = "0"

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the topology and leave it in place (needs CAP_SYS_ADMIN and CAP_NET_ADMIN); removes a leftover with the same suffix first.")

        @Option(help: "Appended to every name: namespaces sluice-s<S>/sluice-c<S>, interfaces ss<S>/sc<S> (at most 13 characters).")
        var suffix: String = NetnsCommand.defaultSuffix

        @Option(parsing: .unconditional, help: "TX/RX queues on each veth end (one per worker or AF_XDP socket).")
        var queues: Int = 1

        @Flag(help: "Leave transmit checksum offload on at the client end (by default it is turned off, as AF_XDP/TUN readers need).")
        var keepChecksumOffload = false

        @Flag(help: "Do not install permanent neighbour entries (then ARP/NDP must work across the pair).")
        var noStaticNeighbours = false

        func validate() throws {
            guard (1...1024).contains(queues) else { throw ValidationError("--queues must be 1 to 1024") }
            try checkSuffix(suffix)
        }

        func run() throws {
            let topology: TestTopology
            do {
                topology = try TestTopology(.init(suffix: suffix, queues: queues,
                                                  disableSenderChecksumOffload: !keepChecksumOffload,
                                                  staticNeighbours: !noStaticNeighbours))
            } catch {
                writeToStandardError("sluice netns up: \(error)\n")
                throw ExitCode.failure
            }
            topology.keep()
            let t = topology
            print("sluice netns up: suffix \(suffix), \(queues) queue(s) per end")
            print("  server: namespace \(t.serverNamespace), interface \(t.serverInterface), "
                  + "\(t.serverIPv4)/\(TestTopology.ipv4PrefixLength), \(t.serverIPv6)/\(TestTopology.ipv6PrefixLength), MAC \(t.serverMAC)")
            print("  client: namespace \(t.clientNamespace), interface \(t.clientInterface), "
                  + "\(t.clientIPv4)/\(TestTopology.ipv4PrefixLength), \(t.clientIPv6)/\(TestTopology.ipv6PrefixLength), MAC \(t.clientMAC)")
            print("  tx checksum offload on \(t.clientInterface): \(keepChecksumOffload ? "on" : "off"); "
                  + "static neighbours: \(noStaticNeighbours ? "no" : "yes")")
            print("  run in it: ip netns exec \(t.serverNamespace) sluice udp-echo --listen \(t.serverIPv4):9000")
            print("             (for XDP use nsenter --net=/run/netns/\(t.serverNamespace) …: ip netns exec hides /sys/fs/bpf)")
            print("  tear down: sluice netns down --suffix \(suffix)")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the topology with this suffix (both namespaces and the veth pair).")

        @Option(help: "The suffix given to `netns up`.")
        var suffix: String = NetnsCommand.defaultSuffix

        func validate() throws {
            try checkSuffix(suffix)
        }

        func run() throws {
            guard TestTopology.exists(suffix: suffix) else {
                print("sluice netns down: no topology with suffix \(suffix); nothing to remove")
                return
            }
            TestTopology.destroy(suffix: suffix)
            if TestTopology.exists(suffix: suffix) {
                writeToStandardError("sluice netns down: could not remove the namespaces for suffix \(suffix); "
                                     + Capability.requirement([.sysAdmin, .netAdmin], for: "removing namespaces") + "\n")
                throw ExitCode.failure
            }
            print("sluice netns down: removed sluice-s\(suffix) and sluice-c\(suffix)")
        }
    }
}

/// Refuses a `--suffix` that makes no valid namespace or interface names, as a usage error.
func checkSuffix(_ suffix: String) throws {
    do { try TestTopology.validate(suffix: suffix) } catch { throw ValidationError("--suffix: \(error)") }
}
