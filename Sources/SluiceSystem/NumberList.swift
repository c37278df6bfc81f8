/// Lists of numbers in the form the kernel writes CPU lists (`/sys/devices/system/cpu/online`)
/// and command lines take CPUs, queues and ports: "1", "0,1", "0-3", "53,9000-9003".
public enum NumberList {
    /// The values `text` lists, in its order, each within `range` and at most `limit` in all;
    /// `nil` when a part is not a number or a low-high range, a value is outside `range`, or
    /// the list is longer than `limit`. An empty text is the empty list.
    public static func parse<T: FixedWidthInteger>(_ text: String, in range: ClosedRange<T> = T.min...T.max,
                                                   limit: Int = 1024) -> [T]? {
        var values: [T] = []
        guard !text.isEmpty else { return [] }
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { T($0) }
            guard (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil,
                  low <= high, range.contains(low), range.contains(high) else { return nil }
            // The span, counted without overflow, must keep the whole list within `limit`.
            let (span, overflow) = high.subtractingReportingOverflow(low)
            guard !overflow, UInt64(clamping: span) < UInt64(clamping: limit - values.count) else { return nil }
            values += Array(low...high)
        }
        return values
    }
}
