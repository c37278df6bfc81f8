#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Sluice

/// `sluice tun up|down`: a persistent TUN or TAP device, made and removed without `ip`.
struct TUNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tun",
        abstract: "Make or remove a persistent TUN or TAP device (rtnetlink for its addresses, MTU and link state).",
        subcommands: [Up.self, Down.self]
    )

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the device, give the kernel its addresses and set it up; it stays after sluice exits.")

        @Option(help: "The device's name, e.g. sl0.")
        var name: String

        @Option(help: "The kernel's address on the device with its prefix, e.g. 198.18.1.1/24 (repeatable).")
        var address: [String] = []

        @Flag(help: "A TAP device (Ethernet frames) instead of TUN (IP packets).")
        var tap = false

        @Option(parsing: .unconditional, help: "Queues (IFF_MULTI_QUEUE above one): serve it with as many workers.")
        var queues: Int = 1

        @Option(parsing: .unconditional, help: "The device's MTU.")
        var mtu: Int?

        @Option(help: "The user allowed to attach to the device (a name or a number).")
        var owner: String?

        @Option(help: "The group allowed to attach to the device (a name or a number).")
        var group: String?

        @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
        var netns: String?

        func validate() throws {
            guard isDeviceName(name) else { throw ValidationError("--name must be \(deviceNameRule)") }
            guard (1...256).contains(queues) else { throw ValidationError("--queues must be 1 to 256") }
            if let owner, ownerID(owner) == nil { throw ValidationError("--owner: no user named '\(owner)'") }
            if let group, groupID(group) == nil { throw ValidationError("--group: no group named '\(group)'") }
            // A TAP device's frames carry a 14-byte Ethernet header within the kernel's 65535.
            let largest = tap ? 65521 : 65535
            if let mtu { guard (68...largest).contains(mtu) else { throw ValidationError("--mtu must be 68 to \(largest)\(tap ? " for a TAP device" : "")") } }
            let prefixes = try parsePrefixes(address)
            // The kernel turns IPv6 off on a link whose MTU is below 1280 (RFC 8200 section 5).
            if let mtu, mtu < 1280, prefixes.contains(where: { $0.address.family == AF_INET6 }) {
                throw ValidationError("--mtu \(mtu) is below IPv6's 1280: the kernel would take no IPv6 address on the device")
            }
        }

        /// A user by name, or by number as `ip tuntap` takes it.
        func ownerID(_ text: String) -> uid_t? { ProcessIdentity.user(named: text)?.uid ?? uid_t(text) }

        /// A group by name or number.
        func groupID(_ text: String) -> gid_t? { ProcessIdentity.groupID(named: text) ?? gid_t(text) }

        func run() throws {
            if let netns { try NetworkNamespace.enter(netns) }
            // As `ip tuntap add`: a name in use is refused, not taken over and reconfigured.
            if if_nametoindex(name) != 0 {
                writeToStandardError("sluice tun up: a device named \(name) exists already "
                                     + "(sluice tun down --name \(name)\(netns.map { " --netns \($0)" } ?? "") removes a TUN or TAP one)\n")
                throw ExitCode(1)
            }
            var configuration = TUNDeviceConfiguration(name: name, kind: tap ? .tap : .tun)
            configuration.queues = queues
            configuration.persistent = true
            configuration.owner = owner.flatMap(ownerID)
            configuration.group = group.flatMap(groupID)
            configuration.mtu = mtu
            configuration.addresses = try parsePrefixes(address)
            let device = try reportingRuntimeErrors("tun up") {
                do throws(SystemCallError) {
                    return try TUNDevice(configuration: configuration)
                } catch {
                    throw RuntimeError(error)
                }
            }
            print("sluice tun up: \(device.kind.rawValue) device \(device.name) (index \(device.index)), "
                  + "\(queues) queue(s), MTU \(device.mtu)\(address.isEmpty ? "" : ", " + address.joined(separator: ", "))")
            let inNamespace = netns.map { " --netns \($0)" } ?? ""
            print("  serve it: sluice udp-echo --backend \(device.kind.rawValue) --name \(device.name) --workers \(queues)\(inNamespace) --listen ADDRESS:PORT …")
            print("  remove it: sluice tun down --name \(device.name)\(inNamespace)")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete the device.")

        @Option(help: "The device's name.")
        var name: String

        @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
        var netns: String?

        func run() throws {
            if let netns { try NetworkNamespace.enter(netns) }
            let index = Int32(bitPattern: if_nametoindex(name))
            guard index != 0 else {
                writeToStandardError("sluice tun down: no device \(name) in \(netns.map { "network namespace \($0)" } ?? "this network namespace (--netns NAME for another)")\n")
                throw ExitCode.failure
            }
            guard TUNDevice.isTUNOrTAP(named: name) else {
                writeToStandardError("sluice tun down: \(name) is not a TUN or TAP device; left as it is (ip link del removes any link)\n")
                throw ExitCode.failure
            }
            try reportingRuntimeErrors("tun down") {
                do throws(SystemCallError) {
                    var netlink = try RouteNetlink()
                    try netlink.deleteLink(index: index)
                } catch {
                    throw RuntimeError(error)
                }
            }
            print("sluice tun down: removed \(name)")
        }
    }
}
