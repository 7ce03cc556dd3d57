/// Types that may hold a plaintext value conform to `Redacted`: their `description`,
/// `debugDescription`, string interpolation and `dump`/`Mirror` output show names only,
/// as `NAME=<redacted>`, so a log line or error message cannot leak a value by accident.
public protocol Redacted: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The redacted rendering, e.g. `Environment(base: LOG_LEVEL=<redacted>)`.
    var redactedDescription: String { get }
}

extension Redacted {
    public var description: String { redactedDescription }
    public var debugDescription: String { redactedDescription }
    /// No children: `dump` and `Mirror` see only the type, never a stored value.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

public let redactedMarker = "<redacted>"

/// `A=<redacted>, B=<redacted>` for a list of names.
public func redactedList(_ names: some Sequence<String>) -> String {
    names.map { "\($0)=\(redactedMarker)" }.joined(separator: ", ")
}
