import FuzzSupport
import StigmerCore

/// `${NAME}` placeholders (DESIGN.md §4): the scanner, `parse`, `resolve`, `escape`, and
/// `mcp check`'s pass over a server, against one another.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlaceholders(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = Fuzz.text(Fuzz.bytes(data, size))
    let utf8 = Array(text.utf8)

    // The scanner's ranges are in bounds, in order and never overlap; columns are 1-based
    // scalar positions within the text.
    let scalars = text.unicodeScalars.count
    let problems = utf8.withUnsafeBufferPointer { buffer in
        var end = 0
        func take(_ range: Range<Int>, _ what: String) {
            Fuzz.expect(range.lowerBound >= end && range.upperBound <= buffer.count, "\(what) range \(range) out of order or bounds (after \(end), of \(buffer.count))")
            end = range.upperBound
        }
        return Placeholder.scan(buffer, literal: { take($0, "literal") }, reference: { name, fallback, column, _ in
            take(name, "name")
            if let fallback { take(fallback, "fallback") }
            Fuzz.expect(VariableName.isValid(utf8: UnsafeBufferPointer(rebasing: buffer[name])), "a reference with an invalid name")
            Fuzz.expect(column >= 1 && column <= scalars, "reference column \(column) outside 1...\(scalars)")
        })
    }
    for problem in problems {
        Fuzz.expect(problem.column >= 1 && problem.column <= scalars, "problem column \(problem.column) outside 1...\(scalars)")
    }

    // `escape` gives the template that resolves to the text exactly.
    switch Placeholder.resolve(Placeholder.escape(text), lookup: { _ in nil }) {
    case .success(let out): Fuzz.expect(out == text, "resolve(escape(text)) != text")
    case .failure(let list): Fuzz.violation("resolve(escape(text)) failed: \(list.problems)")
    }

    // Values are inserted, never scanned again: each holds the canary and a placeholder of
    // its own, which must come out as written. Some names are unset, some empty.
    guard !text.contains(Fuzz.canary) else { return 0 }
    func lookup(_ name: String) -> String? {
        switch name.utf8.count % 3 {
        case 0: nil
        case 1: ""
        default: Fuzz.canary + "${" + name + "}$${X}"
        }
    }
    let (segments, syntax) = Placeholder.parse(text)
    Fuzz.expect(syntax == problems, "parse and scan disagree on problems")
    var inserted = 0
    var failing = Set(syntax.map(\.column))
    for segment in segments {
        switch segment {
        case .literal: break
        case .reference(let name, let fallback, let column):
            if let value = lookup(name), !(fallback != nil && value.isEmpty) {
                if !value.isEmpty { inserted += 1 }
            } else if fallback == nil {
                failing.insert(column)
            }
        case .file(_, let column): failing.insert(column)
        }
    }
    switch Placeholder.resolve(text, lookup: lookup) {
    case .success(let out):
        Fuzz.expect(failing.isEmpty, "resolve succeeded where problems were expected at \(failing.sorted())")
        Fuzz.expect(out.ranges(of: Fuzz.canary).count == inserted,
                    "\(inserted) values inserted, but the output holds another number of them (a value was scanned again)")
    case .failure(let list):
        Fuzz.expect(Set(list.problems.map(\.column)) == failing, "resolve's problems \(list.problems) are not the ones expected at \(failing.sorted())")
        for problem in list.problems { Fuzz.expectNoCanary(in: problem.description, "placeholder problem") }
    }

    // `mcp check` (one pass, no output) finds problems at the same places as `resolve`.
    let server = McpServerDefinition(name: "fuzz", transport: .stdio(StdioServer(command: text)))
    let checked = server.check(lookup: lookup)
    Fuzz.expect(Set(checked.problems.map(\.problem.column)) == failing, "check and resolve disagree: \(checked.problems) vs \(failing.sorted())")
    for problem in checked.problems { Fuzz.expectNoCanary(in: problem.description, "mcp check") }
    Fuzz.expect(Set(checked.names) == Set(Placeholder.references(in: text)), "check and references disagree on names")
    return 0
}
