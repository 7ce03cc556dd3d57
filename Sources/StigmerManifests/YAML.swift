#if canImport(Glibc)
import Glibc
#endif
import CYAML
import StigmerCore
import StigmerSystem

/// YAML through libyaml's event API (the C library Yams wraps, bound directly so the
/// launcher links no Foundation), composed into a `Document` with positions. Error
/// messages carry the parser's problem and position only — never a snippet of the input,
/// which could show a secret written in the file.
enum YAMLReader {
    /// Aliases can multiply a small file into a huge tree ("billion laughs"): cap the nodes.
    static let nodeLimit = 1_000_000

    static func documents(_ text: String, file: String) throws(StigmerError) -> [Document] {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else { throw .data("\(file): cannot start the YAML parser (out of memory)") }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        var bytes = Array(text.utf8)
        return try bytes.withUnsafeMutableBufferPointer { buffer in
            catching { () throws(StigmerError) -> [Document] in
                yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
                var composer = Composer(parser: parser, file: file, text: buffer)
                return try composer.documents()
            }
        }.get()
    }

    /// One event, released when it goes.
    final class Event {
        var raw = yaml_event_t()
        deinit { yaml_event_delete(&raw) }
        var type: yaml_event_type_t { raw.type }
        var line: Int { Int(raw.start_mark.line) + 1 }
        var column: Int { Int(raw.start_mark.column) + 1 }
    }

    struct Composer {
        let parser: UnsafeMutablePointer<yaml_parser_t>
        let file: String
        let text: UnsafeMutableBufferPointer<UInt8>
        var budget = YAMLReader.nodeLimit
        /// Anchored nodes and how many nodes each expands to (anchors live for the stream).
        var anchors: [String: (document: Document, nodes: Int)] = [:]

        mutating func documents() throws(StigmerError) -> [Document] {
            _ = try next()  // stream start
            var out: [Document] = []
            while true {
                let event = try next()  // document start, or the stream's end
                if event.type == YAML_STREAM_END_EVENT { return out }
                out.append(try node(try next()).document)
                _ = try next()  // document end
            }
        }

        mutating func next() throws(StigmerError) -> Event {
            let event = Event()
            guard yaml_parser_parse(parser, &event.raw) == 1 else { throw error() }
            return event
        }

        static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?, _ length: Int? = nil) -> String? {
            guard let pointer else { return nil }
            let count = length ?? strlen(UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))
            return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
        }

        mutating func spend(_ nodes: Int) throws(StigmerError) {
            budget -= nodes
            guard budget >= 0 else { throw .data("\(file): document too large after expanding aliases; simplify it") }
        }

        /// How deep collections nest: the composer recurses once per level (libyaml does
        /// not), so a hostile `- - - - …` must end in an error, not a stack overflow.
        var depth = 0
        static let maxDepth = 512

        mutating func node(_ event: Event) throws(StigmerError) -> (document: Document, nodes: Int) {
            let (line, column) = (event.line, event.column)
            let anchor: UnsafeMutablePointer<yaml_char_t>?
            var result: (document: Document, nodes: Int)
            switch event.type {
            case YAML_ALIAS_EVENT:
                let name = Self.string(event.raw.data.alias.anchor) ?? ""
                guard let found = anchors[name] else {
                    throw .data("\(file):\(line):\(column): invalid YAML: found undefined alias")
                }
                try spend(found.nodes)
                return found
            case YAML_SCALAR_EVENT:
                try spend(1)
                let scalar = event.raw.data.scalar
                let value = Self.string(scalar.value, Int(scalar.length)) ?? ""
                // `!!str 123` is the string "123", as a quoted scalar would be.
                let plain = scalar.style == YAML_PLAIN_SCALAR_STYLE && Self.string(scalar.tag) != "tag:yaml.org,2002:str"
                if plain && ["", "~", "null", "Null", "NULL"].contains(value) {
                    result = (Document(.null, line: line, column: column), 1)
                } else {
                    result = (Document(.scalar(value, plain: plain), line: line, column: column), 1)
                }
                anchor = scalar.anchor
            case YAML_SEQUENCE_START_EVENT:
                try spend(1)
                depth += 1
                defer { depth -= 1 }
                guard depth <= Self.maxDepth else { throw .data("\(file):\(line):\(column): nested more than \(Self.maxDepth) levels deep") }
                anchor = event.raw.data.sequence_start.anchor
                var items: [Document] = []
                var nodes = 1
                while true {
                    let item = try next()
                    if item.type == YAML_SEQUENCE_END_EVENT { break }
                    let child = try node(item)
                    items.append(child.document)
                    nodes += child.nodes
                }
                result = (Document(.sequence(items), line: line, column: column), nodes)
            case YAML_MAPPING_START_EVENT:
                try spend(1)
                depth += 1
                defer { depth -= 1 }
                guard depth <= Self.maxDepth else { throw .data("\(file):\(line):\(column): nested more than \(Self.maxDepth) levels deep") }
                anchor = event.raw.data.mapping_start.anchor
                var entries: [Document.Entry] = []
                var nodes = 1
                while true {
                    let key = try next()
                    if key.type == YAML_MAPPING_END_EVENT { break }
                    guard key.type == YAML_SCALAR_EVENT else {
                        throw .data("\(file):\(key.line):\(key.column): mapping keys must be plain strings")
                    }
                    let name = Self.string(key.raw.data.scalar.value, Int(key.raw.data.scalar.length)) ?? ""
                    // A YAML 1.1 merge key would be kept as a key named "<<" and its fields
                    // silently lost: refused.
                    if name == "<<" && key.raw.data.scalar.style == YAML_PLAIN_SCALAR_STYLE {
                        throw .data("\(file):\(key.line):\(key.column): YAML merge keys (<<) are not supported; write the fields out")
                    }
                    if let keyAnchor = Self.string(key.raw.data.scalar.anchor) {
                        anchors[keyAnchor] = (Document(.scalar(name, plain: key.raw.data.scalar.style == YAML_PLAIN_SCALAR_STYLE),
                                                       line: key.line, column: key.column), 1)
                    }
                    let value = try node(try next())
                    entries.append(Document.Entry(key: name, keyLine: key.line, keyColumn: key.column, value: value.document))
                    nodes += value.nodes
                }
                try checkDuplicates(entries)
                result = (Document(.mapping(entries), line: line, column: column), nodes)
            default:
                throw .data("\(file):\(line):\(column): invalid YAML: unexpected event")
            }
            if let name = Self.string(anchor) { anchors[name] = result }
            return result
        }

        /// Which one of two equal keys wins differs between readers: refuse them all.
        /// Positioned at the first occurrence of the smallest duplicated key.
        func checkDuplicates(_ entries: [Document.Entry]) throws(StigmerError) {
            var first: [String: Document.Entry] = [:]
            var duplicated = Set<String>()
            for entry in entries {
                if first[entry.key] == nil { first[entry.key] = entry } else { duplicated.insert(entry.key) }
            }
            guard !duplicated.isEmpty else { return }
            let keys = duplicated.sorted()
            let at = first[keys[0]]!
            throw .data("\(file):\(at.keyLine):\(at.keyColumn): duplicate key\(keys.count == 1 ? "" : "s") \(keys.map(quoted).joined(separator: ", ")); keep one")
        }

        func error() -> StigmerError {
            let p = parser.pointee
            let problem = p.problem.map { String(cString: $0) } ?? "unknown problem"
            switch p.error {
            case YAML_READER_ERROR:
                // The offset in characters, as Yams reported it.
                let end = min(Int(p.problem_offset), text.count)
                let offset = String(decoding: UnsafeBufferPointer(rebasing: text[..<end]), as: UTF8.self).count
                return .data("\(file): invalid YAML: \(problem) at byte \(offset)")
            case YAML_SCANNER_ERROR, YAML_PARSER_ERROR, YAML_COMPOSER_ERROR:
                let context = p.context.map { " " + String(cString: $0) } ?? ""
                return .data("\(file):\(Int(p.problem_mark.line) + 1):\(Int(p.problem_mark.column) + 1): invalid YAML: \(problem)\(context)")
            default:
                return .data("\(file): invalid YAML (the parser ran out of memory)")
            }
        }
    }
}
