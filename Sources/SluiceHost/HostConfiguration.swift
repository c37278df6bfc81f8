import SluiceCore
import SluicePackets

/// Who the host behind a TUN or TAP device is: the addresses it answers for, its MAC on a TAP
/// device, the device's MTU, and the bounds on what it keeps for reassembly.
public struct HostConfiguration: Sendable {
    /// The host's own addresses: ARP, neighbour solicitations and echo requests for these are answered.
    public var addresses: [IPAddress]
    /// The host's MAC on a TAP device; `nil` over TUN, which has no link layer.
    public var mac: MACAddress?
    /// The device's MTU: longer replies leave as fragments.
    public var mtu: Int
    /// The device's MTU as it is now, asked once a second while packets come (so `ip link set
    /// … mtu` under a running host takes effect, as it does for the kernel); `nil` keeps ``mtu``.
    public var currentMTU: (@Sendable () -> Int?)?
    /// Answer ICMP and ICMPv6 echo requests (ping).
    public var answersEcho = true
    /// The service's UDP port: a datagram to another port of the host's addresses gets ICMP port
    /// unreachable, as from a host with no socket there (within the kernel's ICMP rate limits), a
    /// TCP segment a reset, another protocol ICMP protocol unreachable (ICMPv6 parameter
    /// problem). `nil`: every port and protocol is the service's.
    public var udpPort: UInt16?
    /// Verify IPv4 header and ICMP checksums, as the kernel does for what arrives on a device.
    public var verifiesChecksums = true
    /// Bounds on reassembly.
    public var reassembly = ReassemblyLimits()
    /// Bounds on the ICMP and ICMPv6 errors the host sends.
    public var icmpErrors = ICMPErrorLimits()
    /// What the host's workers share (their ICMP error limits, the path MTUs they learn), when
    /// it runs more than one: made once, given to each. `nil`: this worker keeps its own.
    public var shared: HostShared?

    /// A host with `addresses`, `mac` on a TAP device, behind a device of `mtu`.
    public init(addresses: [IPAddress], mac: MACAddress? = nil, mtu: Int) {
        self.addresses = addresses
        self.mac = mac
        self.mtu = mtu
    }
}

/// What reassembly may hold, and for how long: the kernel's `ipfrag_*` settings, per worker.
public struct ReassemblyLimits: Sendable, Equatable {
    /// Datagrams being reassembled at once, from all sources (at most half the pool's frames:
    /// each holds one); one more evicts the oldest.
    public var datagrams = 256
    /// Datagrams being reassembled at once from one source; one more evicts that source's oldest.
    /// As many as the kernel lets one source have in flight (`ipfrag_max_dist`, 64).
    public var datagramsPerSource = 64
    /// How long an IPv4 datagram may take to arrive whole (`ipfrag_time`, 30 s).
    public var timeoutIPv4: Duration = .seconds(30)
    /// How long an IPv6 datagram may take (`ip6frag_time`, 60 s).
    public var timeoutIPv6: Duration = .seconds(60)

    /// The kernel's defaults, bounded per source.
    public init() {}
}

/// How many ICMP errors the host sends, and how often to one peer: the kernel's `icmp_*`
/// settings, so a spoofed flood cannot turn the host into a reflector. The defaults are the
/// kernel's; ``HostConfiguration`` users read the device's namespace's settings into it.
public struct ICMPErrorLimits: Sendable, Equatable {
    /// Errors a second from the whole host (`net.ipv4.icmp_msgs_per_sec`, 1000; IPv6 shares it).
    public var messagesPerSecond = 1000
    /// Errors the whole host may send at once (`net.ipv4.icmp_msgs_burst`, 50).
    public var burst = 50
    /// The time between IPv4 errors to one peer, which may have six at once
    /// (`net.ipv4.icmp_ratelimit`, 1 s; zero: no limit per peer).
    public var peerIntervalIPv4: Duration = .seconds(1)
    /// The time between ICMPv6 errors to one peer, which may have six at once
    /// (`net.ipv6.icmp.ratelimit`, 1 s).
    public var peerIntervalIPv6: Duration = .seconds(1)

    /// The kernel's defaults.
    public init() {}
}

/// What a ``HostStage`` has done. Every packet it takes in is in exactly one of: passed to the
/// service stage, answered, kept as a fragment, or dropped under one cause.
public struct HostCounters: Equatable, Sendable {
    /// ARP requests for the host's address, answered.
    public var arpReplies: UInt64 = 0
    /// Neighbour solicitations for the host's address, answered with an advertisement.
    public var neighborAdvertisements: UInt64 = 0
    /// Echo requests answered (ICMP and ICMPv6).
    public var echoReplies: UInt64 = 0
    /// ARP, ICMP and ICMPv6 messages the host has no answer for (replies, router and multicast
    /// listener messages, requests for another address): dropped, as a host ignores them.
    public var ignoredControl: UInt64 = 0
    /// Frames for another MAC address.
    public var notForThisHost: UInt64 = 0
    /// Frames of an EtherType the host does not speak.
    public var otherEtherType: UInt64 = 0
    /// Packets too short for their headers, or whose lengths disagree.
    public var malformed: UInt64 = 0
    /// IPv4 header or ICMP checksums that did not verify, and UDP checksums of datagrams to a closed port.
    public var badChecksum: UInt64 = 0
    /// ICMP "fragmentation needed" and ICMPv6 "packet too big" about the host's own packets: the
    /// MTU they give now bounds what goes to that destination.
    public var pathMTUUpdates: UInt64 = 0
    /// UDP datagrams to a port the service is not on, answered with ICMP port unreachable.
    public var portUnreachable: UInt64 = 0
    /// TCP segments to the host answered with a reset: no TCP port is open.
    public var tcpResets: UInt64 = 0
    /// Packets of a protocol the host does not carry, answered with ICMP protocol unreachable
    /// (ICMPv6 parameter problem).
    public var protocolUnreachable: UInt64 = 0
    /// Packets the kernel drops for their IPv4 options (a source route) or IPv6 extension headers
    /// (options marked "discard", headers cut short), dropped.
    public var refusedOptions: UInt64 = 0
    /// Packets whose IPv4 options or IPv6 extension headers earn a parameter problem (an option
    /// the kernel finds wrong; an IPv6 option that says to report it, a routing header of an
    /// unknown type with segments left, hop-by-hop options not first), answered with it.
    public var parameterProblems: UInt64 = 0
    /// Datagrams not whole in time whose first fragment had come, answered with ICMP time
    /// exceeded, fragment reassembly (the rest of the timed-out ones are in ``reassembly``).
    public var timeExceeded: UInt64 = 0
    /// UDP datagrams to a port the service is not on, and TCP segments and other protocols,
    /// dropped unanswered: past the ICMP rate limits, to or from an address no answer goes to,
    /// resets themselves; and parameter problems
    /// and reassembly time exceeded left unanswered for the same reasons.
    public var closedPort: UInt64 = 0
    /// Reassembly's own counts.
    public var reassembly = ReassemblyCounters()
    /// Replies cut into fragments for the MTU.
    public var fragmentedReplies: UInt64 = 0
    /// Fragments sent for them.
    public var fragmentsSent: UInt64 = 0
    /// Packets dropped on the way out: no frame for a fragment, or no room to queue it.
    public var droppedOutput: UInt64 = 0

    /// Zero counts.
    public init() {}

    /// Adds another worker's counts to these.
    public mutating func add(_ other: HostCounters) {
        arpReplies &+= other.arpReplies
        neighborAdvertisements &+= other.neighborAdvertisements
        echoReplies &+= other.echoReplies
        ignoredControl &+= other.ignoredControl
        notForThisHost &+= other.notForThisHost
        otherEtherType &+= other.otherEtherType
        malformed &+= other.malformed
        badChecksum &+= other.badChecksum
        pathMTUUpdates &+= other.pathMTUUpdates
        portUnreachable &+= other.portUnreachable
        tcpResets &+= other.tcpResets
        protocolUnreachable &+= other.protocolUnreachable
        timeExceeded &+= other.timeExceeded
        parameterProblems &+= other.parameterProblems
        refusedOptions &+= other.refusedOptions
        closedPort &+= other.closedPort
        reassembly.add(other.reassembly)
        fragmentedReplies &+= other.fragmentedReplies
        fragmentsSent &+= other.fragmentsSent
        droppedOutput &+= other.droppedOutput
    }

    /// The counts as name–value pairs, for summaries and JSON.
    public var fields: [(String, UInt64)] {
        [("arp_replies", arpReplies), ("neighbor_advertisements", neighborAdvertisements), ("echo_replies", echoReplies),
         ("ignored_control", ignoredControl), ("not_for_this_host", notForThisHost), ("other_ethertype", otherEtherType),
         ("host_malformed", malformed), ("host_bad_checksum", badChecksum), ("path_mtu_updates", pathMTUUpdates),
         ("port_unreachable_sent", portUnreachable), ("tcp_resets_sent", tcpResets),
         ("protocol_unreachable_sent", protocolUnreachable), ("time_exceeded_sent", timeExceeded),
         ("parameter_problems_sent", parameterProblems), ("host_refused_options", refusedOptions),
         ("closed_port", closedPort)]
            + reassembly.fields
            + [("fragmented_replies", fragmentedReplies), ("fragments_sent", fragmentsSent), ("dropped_output", droppedOutput)]
    }
}

/// What a ``Reassembler`` has done.
public struct ReassemblyCounters: Equatable, Sendable {
    /// Fragments taken in.
    public var fragments: UInt64 = 0
    /// Datagrams made whole.
    public var reassembled: UInt64 = 0
    /// Fragments wholly inside data already received: dropped alone (the kernel's `IPFRAG_DUP`).
    public var duplicates: UInt64 = 0
    /// Datagrams thrown away because a fragment partly overlapped another (RFC 5722), or its
    /// end disagreed with the datagram's length.
    public var overlaps: UInt64 = 0
    /// Datagrams that did not arrive whole in time.
    public var timedOut: UInt64 = 0
    /// Datagrams evicted to make room for a newer one (over the total or the per-source bound).
    public var evicted: UInt64 = 0
    /// Fragments with bad lengths (past 65535 bytes, an IPv6 fragment not a multiple of 8).
    public var malformed: UInt64 = 0
    /// Fragments dropped for want of a frame to reassemble into.
    public var noFrame: UInt64 = 0

    /// Zero counts.
    public init() {}

    /// Adds another reassembler's counts to these.
    public mutating func add(_ other: ReassemblyCounters) {
        fragments &+= other.fragments
        reassembled &+= other.reassembled
        duplicates &+= other.duplicates
        overlaps &+= other.overlaps
        timedOut &+= other.timedOut
        evicted &+= other.evicted
        malformed &+= other.malformed
        noFrame &+= other.noFrame
    }

    /// The counts as name–value pairs.
    public var fields: [(String, UInt64)] {
        [("fragments_in", fragments), ("reassembled", reassembled), ("fragment_duplicates", duplicates),
         ("fragment_overlaps", overlaps), ("reassembly_timeouts", timedOut), ("reassembly_evictions", evicted),
         ("fragment_malformed", malformed), ("reassembly_no_frame", noFrame)]
    }
}
