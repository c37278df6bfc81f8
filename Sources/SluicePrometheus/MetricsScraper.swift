import NIOCore
import NIOHTTP1
import NIOPosix

/// Where a metrics page is: `http://HOST:PORT/PATH` (plain HTTP, as Prometheus scrapes).
public struct MetricsURL: Sendable, Equatable, CustomStringConvertible {
    /// The host: a name, an IPv4 address or an IPv6 address (without brackets).
    public var host: String
    /// The port (80 when the URL names none).
    public var port: Int
    /// The path, `/metrics` when the URL names none.
    public var path: String

    /// Reads `http://HOST[:PORT][/PATH]`; `HOST:PORT` alone means `http://HOST:PORT/metrics`.
    public init?(_ text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.contains("://") { return nil }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        path = slash == rest.endIndex ? "/metrics" : String(rest[slash...])
        var authority = rest[..<slash]
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            authority = authority[authority.index(after: close)...]
            if !authority.isEmpty {
                guard authority.hasPrefix(":"), let number = Int(authority.dropFirst()) else { return nil }
                port = number
            }
        } else {
            let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count) else { return nil }
            host = String(parts[0])
            if parts.count == 2 {
                guard let number = Int(parts[1]) else { return nil }
                port = number
            }
        }
        guard !host.isEmpty, (1...65535).contains(port), path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        self.port = port
    }

    public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }
}

/// Why a scrape failed.
public struct MetricsScrapeError: Error, CustomStringConvertible {
    /// The page.
    public var url: MetricsURL
    /// What went wrong.
    public var reason: String

    public var description: String { "cannot read \(url): \(reason)" }
}

/// Reads metrics pages over HTTP/1.1 (one connection per scrape, as Prometheus does between
/// scrapes of a small target), on SwiftNIO's shared event loop.
public enum MetricsScraper {
    /// The largest page read.
    public static let maximumPageSize = 16 << 20

    /// The body of `url`, waiting at most `timeout` for all of it.
    ///
    /// - Throws: ``MetricsScrapeError`` when the connection fails, the status is not 200, the page
    ///   is larger than ``maximumPageSize`` or time runs out.
    public static func fetch(_ url: MetricsURL, timeout: Duration = .seconds(5)) throws(MetricsScrapeError) -> String {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let limit = TimeAmount.nanoseconds(Int64(timeout / .nanoseconds(1)))
        let promise = eventLoop.makePromise(of: String.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(limit)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(PageReader(url: url, promise: promise))
                }
            }
        let timer = eventLoop.scheduleTask(in: limit) {
            promise.fail(MetricsScrapeError(url: url, reason: "no complete answer within \(timeout)"))
        }
        let connected = bootstrap.connect(host: url.host, port: url.port)
        connected.whenFailure { promise.fail(MetricsScrapeError(url: url, reason: connectionFailure($0))) }
        defer {
            timer.cancel()
            connected.whenSuccess { $0.close(promise: nil) }
        }
        do {
            return try promise.futureResult.wait()
        } catch let error as MetricsScrapeError {
            throw error
        } catch {
            throw MetricsScrapeError(url: url, reason: "\(error)")
        }
    }
}

/// Why a connection failed, in the words of its errno where there is one: NIO's own description
/// nests the attempts and their addresses.
private func connectionFailure(_ error: any Error) -> String {
    var cause = error
    if let attempts = error as? NIOConnectionError {
        guard let first = attempts.connectionErrors.first else { return "no address for \(attempts.host)" }
        cause = first.error
    }
    if let io = cause as? IOError {
        let text = "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
        return io.errnoCode == ECONNREFUSED ? text + "; is the service running with --metrics-listen on this address?" : text
    }
    if case ChannelError.connectTimeout(let after) = cause { return "no connection within \(after.nanoseconds / 1_000_000) ms" }
    return "\(cause)"
}

/// Sends one GET and collects the body.
final class PageReader: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let url: MetricsURL
    let promise: EventLoopPromise<String>
    var status: HTTPResponseStatus?
    var body: [UInt8] = []

    init(url: MetricsURL, promise: EventLoopPromise<String>) {
        self.url = url
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: url.host.contains(":") ? "[\(url.host)]:\(url.port)" : "\(url.host):\(url.port)")
        headers.add(name: "Accept", value: "text/plain")
        headers.add(name: "User-Agent", value: "sluice-top")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var buffer):
            guard body.count + buffer.readableBytes <= MetricsScraper.maximumPageSize else {
                promise.fail(MetricsScrapeError(url: url, reason: "the page is larger than \(MetricsScraper.maximumPageSize) bytes"))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            if status == .ok {
                promise.succeed(String(decoding: body, as: UTF8.self))
            } else {
                promise.fail(MetricsScrapeError(url: url, reason: "HTTP status \(status.map { "\($0.code) \($0.reasonPhrase)" } ?? "missing")"))
            }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(MetricsScrapeError(url: url, reason: "the connection closed before the page was complete"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's parser names only the byte it choked on ("invalid constant string").
        let reason = error is HTTPParserError ? "the answer is not HTTP (\(error)): is this the service's --metrics-listen port?" : "\(error)"
        promise.fail(MetricsScrapeError(url: url, reason: reason))
        context.close(promise: nil)
    }
}
