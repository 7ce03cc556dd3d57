import FuzzSupport
import StigmerCore
import StigmerManifests

/// The strict JSON reader (mcpServers configs, seccomp profiles, manifests, AdmissionReviews).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    Fuzz.eachText(data, size, check)
    return 0
}

func check(_ text: String) {
    let documents: [Document]
    do { documents = try Loader.documents(text, file: "fuzz.json") } catch {
        // Keys are named in a duplicate-key error (a key, never a value); nothing else
        // from the input is shown.
        if !error.message.contains("duplicate key") { Fuzz.expectNoCanary(error, "JSON reader") }
        return
    }
    Fuzz.expect(documents.count == 1, "a JSON file read as \(documents.count) documents")
    let lines = text.utf8.count { $0 == 0x0A } + 1
    Fuzz.expectPositions(documents[0], lines: lines)
    // What the writer makes of a document (`mcp wrap`) reads back as the same JSON value,
    // pretty or compact.
    var compact = ""
    JSONWriter.writeCompact(documents[0], into: &compact)
    for written in [JSONWriter.write(documents[0]), compact] {
        do {
            let again = try Loader.documents(written, file: "fuzz.json")
            var twice = ""
            JSONWriter.writeCompact(again[0], into: &twice)
            Fuzz.expect(again.count == 1 && twice == compact, "written JSON reads back differently")
        } catch {
            Fuzz.violation("written JSON does not read back: \(error)")
        }
    }
}
