import SluicePackets

/// What a stub resolver asks and how: the servers and options of `resolv.conf(5)` and the
/// addresses of `hosts(5)`.
public struct DNSResolverConfiguration: Sendable, Equatable {
    /// Servers, in order (`nameserver`), port 53 unless given.
    public var servers: [IPEndpoint] = []
    /// Domains tried for a name with fewer than ``dots`` dots (`search`, or `domain`).
    public var search: [DNSName] = []
    /// `options ndots:N` (1).
    public var dots = 1
    /// `options timeout:N`: seconds to wait for each server (5).
    public var timeout: Duration = .seconds(5)
    /// `options attempts:N`: rounds over all servers (2).
    public var attempts = 2
    /// `options rotate`: start each query at a server picked at random, as glibc does.
    public var rotates = false
    /// Addresses from `hosts(5)`, by name (lower case).
    public var hosts: [DNSName: [IPAddress]] = [:]
    /// The interface (a name, or an index in digits) of each server given with a zone, as in
    /// `nameserver fe80::53%eth0`: a link-local address means nothing without it.
    public var serverZones: [IPEndpoint: String] = [:]

    /// An empty configuration.
    public init() {}

    /// Reads `resolv.conf` and `hosts` texts as glibc does (the last `search` or `domain`
    /// wins; at most 3 servers, the local one, 127.0.0.1, when none is named; unknown lines ignored).
    public init(resolvConf: String, hosts: String = "") {
        for line in resolvConf.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let keyword = words.first, !keyword.hasPrefix("#"), !keyword.hasPrefix(";") else { continue }
            switch keyword {
            case "nameserver":
                if words.count > 1, servers.count < 3, let (server, zone) = Self.server(words[1]) {
                    servers.append(server)
                    if let zone { serverZones[server] = zone }
                }
            case "search", "domain":
                setSearch(words.dropFirst())
            case "options":
                setOptions(words.dropFirst())
            default:
                break
            }
        }
        // resolv.conf(5): with no nameserver line, the name server on the local machine.
        if servers.isEmpty { servers = [IPEndpoint(address: .v4(.loopback), port: 53)] }
        for line in hosts.split(separator: "\n") {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, let address = IPAddress(words[0]) else { continue }
            for name in words.dropFirst() {
                guard let parsed = DNSName(name.hasSuffix(".") ? String(name) : name + ".") else { continue }
                self.hosts[parsed, default: []].append(address)
            }
        }
    }

    /// A server as `resolv.conf` names it: an address, with `%ZONE` after an IPv6 one (kept for a
    /// link-local address, dropped after any other, as glibc drops it).
    public static func server(_ text: Substring) -> (IPEndpoint, zone: String?)? {
        let parts = text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        guard parts.count == 2 else { return (IPEndpoint(address: address, port: 53), nil) }
        guard case .v6(let v6) = address, !parts[1].isEmpty else { return nil }
        // As glibc takes a zone: for a link-local address (unicast or multicast) only.
        let linkLocal = v6.isLinkLocal || v6.high >> 48 == 0xFF02
        return (IPEndpoint(address: address, port: 53), linkLocal ? String(parts[1]) : nil)
    }

    /// Takes the environment's word over the files', as glibc's resolver does (`resolv.conf(5)`):
    /// `LOCALDOMAIN` is the search list, `RES_OPTIONS` options applied after the file's.
    public mutating func apply(environment: [String: String]) {
        let words = { (text: String) in text.split(whereSeparator: { $0 == " " || $0 == "\t" })[...] }
        if let domains = environment["LOCALDOMAIN"] { setSearch(words(domains)) }
        if let options = environment["RES_OPTIONS"] { setOptions(words(options)) }
    }

    mutating func setSearch(_ words: ArraySlice<Substring>) {
        search = words.compactMap { DNSName($0.hasSuffix(".") ? String($0) : $0 + ".") }
    }

    mutating func setOptions(_ words: ArraySlice<Substring>) {
        for option in words {
            let parts = option.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count == 2 ? Int(parts[1]) : nil
            switch parts[0] {
            case "ndots": if let value { dots = min(max(value, 0), 15) }
            case "timeout": if let value { timeout = .seconds(min(max(value, 1), 30)) }
            case "attempts": if let value { attempts = min(max(value, 1), 5) }
            case "rotate": rotates = true
            default: break
            }
        }
    }

    /// The names to try for `text`, in order (`resolv.conf(5)`: with at least ``dots`` dots the
    /// name as given first, then with each search domain; an absolute name only as given).
    public func candidates(_ text: String) -> [DNSName] {
        candidateList(text).names
    }

    /// ``candidates(_:)``, and whether the name as given comes first of several (its failure,
    /// whatever it is, then goes on down the search list, as glibc's res_search does).
    func candidateList(_ text: String) -> (names: [DNSName], asGivenFirst: Bool) {
        if text.hasSuffix(".") { return (DNSName(text).map { [$0] } ?? [], false) }
        let asGiven = DNSName(text + ".")
        let searched = search.compactMap { domain in DNSName(text, origin: domain) }
        let dotCount = text.filter { $0 == "." }.count
        return dotCount >= dots ? ([asGiven].compactMap { $0 } + searched, asGiven != nil && !searched.isEmpty)
            : (searched + [asGiven].compactMap { $0 }, false)
    }
}
