import FuzzSupport
import StigmerCore
import StigmerCrypto

/// The fetch helper's frame (`stigmer-exec-full fetch` → the launcher, over a pipe): the
/// launcher must survive whatever a compromised helper writes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    let frame: FetchFrame
    do { frame = try FetchFrame.decode(bytes) } catch {
        // One fixed message, whatever came: nothing of the input is shown.
        Fuzz.expect(error.code == .unavailable && !error.description.contains("STGX"), "an unexpected error: \(error)")
        return 0
    }
    // What decodes, encodes to a canonical form that decodes to itself.
    let encoded = frame.encode()
    Fuzz.expect(encoded.count <= bytes.count, "a frame encoded longer than it came")
    do {
        let again = try FetchFrame.decode(encoded)
        Fuzz.expect(again.encode() == encoded, "a frame does not survive encode and decode")
        Fuzz.expect(again.values.map(\.name) == frame.values.map(\.name) && again.tokenHash == frame.tokenHash, "a frame changed in transit")
    } catch {
        Fuzz.violation("an encoded frame does not decode: \(error)")
    }
    // Its description names values, never shows their data.
    let shown = "\(frame)"
    for value in frame.values where value.data.count >= 8 {
        let data = Fuzz.text(value.data)
        if !frame.executionID.contains(data) && !frame.values.contains(where: { $0.name.contains(data) }) {
            Fuzz.expect(!shown.contains(data), "a frame's description shows a value's data")
        }
    }
    return 0
}
