import FuzzSupport
import StigmerCore
import StigmerEngine
import StigmerLaunch

/// Duration and size arguments: `--ttl 1h30m` (DurationText) and `--memory-limit 512Mi`
/// (HardeningSpec.size). The first byte picks the parser, the rest is the argument.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzArguments(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    guard let which = bytes.first else { return 0 }
    let text = Fuzz.text(Array(bytes.dropFirst()))
    if which & 1 == 0 {
        do {
            let seconds = try DurationText.seconds(text)
            Fuzz.expect(seconds >= 1 && seconds <= DurationText.maximum, "a duration of \(seconds) s outside 1...\(DurationText.maximum)")
            // The same number of seconds, written plainly, reads the same.
            Fuzz.expect((try? DurationText.seconds("\(seconds)s")) == seconds, "\(seconds)s reads differently")
        } catch {
            Fuzz.expect(error.code == .usage, "a bad duration is not a usage error: \(error)")
        }
    } else {
        do {
            let limit = try HardeningSpec.size(text)
            Fuzz.expect(limit >= 1, "a size of \(limit) bytes")
            Fuzz.expect((try? HardeningSpec.size("\(limit)")) == limit, "\(limit) reads differently")
            if limit % 1024 == 0 { Fuzz.expect((try? HardeningSpec.size("\(limit / 1024)Ki")) == limit, "\(limit / 1024)Ki reads differently") }
        } catch {
            Fuzz.expect(error.code == .usage, "a bad size is not a usage error: \(error)")
        }
    }
    return 0
}
