import FuzzSupport
import StigmerCore
import StigmerManifests

/// The YAML reader (libyaml's events composed into a `Document`): manifests, MCP configs,
/// sandbox profiles, `inject`'s pods.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzYAML(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    Fuzz.eachText(data, size, check)
    return 0
}

func check(_ input: String) {
    // The loader reads a file that starts with `{` or `[` as JSON (the json harness's
    // ground): an explicit document start keeps flow YAML on this one.
    let first = input.utf8.first { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
    let text = first == UInt8(ascii: "{") || first == UInt8(ascii: "[") ? "--- " + input : input
    let documents: [Document]
    do { documents = try Loader.documents(text, file: "fuzz.yaml") } catch {
        // Keys are named in a duplicate-key error (a key, never a value); libyaml's own
        // problems are its fixed texts and a position.
        if !error.message.contains("duplicate key") { Fuzz.expectNoCanary(error, "YAML reader") }
        return
    }
    // YAML 1.1 also breaks lines at CR, NEL, LS and PS: count their bytes (an upper bound).
    let lines = text.utf8.count { [0x0A, 0x0D, 0x85, 0xA8, 0xA9].contains($0) } + 1
    for document in documents {
        Fuzz.expectPositions(document, lines: lines)
        // `inject` writes YAML for kubectl: it reads back as the same JSON value. Trees
        // grown large by aliases are left out (seconds each, nothing new).
        guard Fuzz.nodeCount(document) <= 5_000 else { continue }
        var compact = ""
        JSONWriter.writeCompact(document, into: &compact)
        let written = YAMLWriter.write(document)
        do {
            let again = try Loader.documents(written, file: "fuzz.yaml")
            var twice = ""
            if let only = again.first { JSONWriter.writeCompact(only, into: &twice) }
            Fuzz.expect(again.count == 1 && twice == compact, "written YAML reads back differently:\n\(written)")
        } catch {
            Fuzz.violation("written YAML does not read back: \(error)\n\(written)")
        }
    }
}
