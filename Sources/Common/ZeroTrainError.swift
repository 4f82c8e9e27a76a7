import Foundation

/// Whose problem an error is, which decides the exit code: the user's input (2) or a failure
/// while running (1).
public enum ErrorKind: String, Sendable {
    /// A config value, an argument, a file that is missing or not what it should be: fix the input.
    case badInput
    /// Something failed while running (I/O, a lost peer, a timeout): the input was fine.
    case runtime
}

/// The error protocol every module's error type conforms to: a code to branch on, a message that
/// tells the user what to do, and the underlying cause, kept as an error rather than flattened
/// into text on its way up.
public protocol ZeroTrainError: Error, CustomStringConvertible {
    associatedtype Code: RawRepresentable & Sendable where Code.RawValue == String
    var code: Code { get }
    /// One line: what went wrong and what to do about it.
    var message: String { get }
    /// What caused this error, if another error did (kept as the error, not its text).
    var cause: (any Error)? { get }
    var kind: ErrorKind { get }
}

extension ZeroTrainError {
    /// The message, then the chain of causes (a cause whose text the message already holds is
    /// not repeated: an error re-raised as another module's keeps the original's words).
    public var description: String {
        guard let cause else { return message }
        let text = Self.oneLine(cause)
        return message.contains(text) ? message : message + " (cause: \(text))"
    }

    /// An error as one line of text (a cause's own causes included); a Foundation error by its
    /// POSIX reason where it has one ("Is a directory (errno 21)").
    public static func oneLine(_ error: any Error) -> String {
        let text: String
        if let e = error as? any ZeroTrainError {
            text = e.description
        } else if let posix = Self.posixCode(error as NSError) {
            text = String(cString: strerror(posix)) + " (errno \(posix))"
        } else {
            text = String(describing: error)
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    private static func posixCode(_ error: NSError) -> Int32? {
        if error.domain == NSPOSIXErrorDomain { return Int32(error.code) }
        guard let underlying = error.userInfo[NSUnderlyingErrorKey] as? any Error else { return nil }
        return posixCode(underlying as NSError)
    }
}
