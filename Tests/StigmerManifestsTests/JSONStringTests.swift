import Testing
import StigmerCore
@testable import StigmerManifests

@Suite("JSON strings")
struct JSONStringTests {
    /// The reader's word-at-a-time search for a string's end against what each string was
    /// built to hold: quotes, backslashes and escapes at every offset of an 8-byte word.
    @Test func stringsWithEscapesAtEveryOffset() throws {
        var rng = SystemRandomNumberGenerator()
        // (as written in JSON, what it reads as)
        let pieces: [(String, String)] = [("a", "a"), (" ", " "), ("é", "é"), ("🙂", "🙂"), ("\\\"", "\""),
                                          ("\\\\", "\\"), ("\\n", "\n"), ("\\u0041", "A"), ("\\/", "/"), ("'", "'")]
        for _ in 0..<3_000 {
            let chosen = (0..<Int.random(in: 0..<30, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }
            let pad = String(repeating: " ", count: Int.random(in: 0..<8, using: &rng))
            let json = "[" + pad + "\"" + chosen.map(\.0).joined() + "\"]"
            let document = try JSONReader.document(json, file: "t.json")
            guard case .sequence(let items) = document.kind, items.count == 1, case .scalar(let text, _) = items[0].kind else {
                Issue.record("not a one-string list: \(json)")
                continue
            }
            #expect(text == chosen.map(\.1).joined(), "\(json)")
        }
    }

    /// A raw control character or an unterminated string is refused wherever it falls.
    @Test func controlCharactersAndEndsAreFoundAtEveryOffset() {
        for offset in 0..<20 {
            let body = String(repeating: "x", count: offset)
            #expect(throws: StigmerError.self) { try JSONReader.document("[\"" + body + "\u{1}y\"]", file: "t.json") }
            #expect(throws: StigmerError.self) { try JSONReader.document("[\"" + body + "\t\"]", file: "t.json") }
            #expect(throws: StigmerError.self) { try JSONReader.document("[\"" + body, file: "t.json") }
        }
    }
}
