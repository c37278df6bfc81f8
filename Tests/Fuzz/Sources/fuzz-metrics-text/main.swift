import FuzzDriver
import SluicePrometheus

/// A scraped metrics page (Prometheus text format), as `sluice top` reads it; and a URL.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: input(start, count), as: UTF8.self)
    _ = try? MetricsText.parse(text)
    _ = MetricsURL(text)
    return 0
}

runFuzzer(fuzz)
