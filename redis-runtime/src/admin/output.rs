//! What the command prints on stdout, written so that a closed pipe
//! (`keyspace describe | head -1`) ends the output quietly instead of
//! panicking the way `println!` does.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;

/// A command's stdout, collected and written at once by [`Out::flush`].
#[derive(Debug, Default)]
pub(super) struct Out {
    text: String,
}

impl Out {
    /// Appends one line.
    pub(super) fn line(&mut self, line: impl std::fmt::Display) {
        // Writing to a `String` cannot fail.
        let _ = writeln!(self.text, "{line}");
    }

    /// Appends text as it is.
    pub(super) fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends `value` as pretty JSON and a newline.
    pub(super) fn json(&mut self, value: &Value) {
        // Serializing a `Value` cannot fail.
        self.line(serde_json::to_string_pretty(value).unwrap_or_default());
    }

    /// Moves what was collected into `buffer`, for tests.
    #[cfg(test)]
    pub(super) fn text_into(self, buffer: &mut String) {
        buffer.push_str(&self.text);
    }

    /// Writes everything to stdout. A reader that went away (a closed
    /// pipe) is not an error: the output is simply no longer wanted.
    /// Another write error is reported on stderr.
    pub(super) fn flush(self) {
        let mut stdout = std::io::stdout().lock();
        let written = stdout
            .write_all(self.text.as_bytes())
            .and_then(|()| stdout.flush());
        match written {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                warn(format_args!("cannot write the output: {e}"));
            }
            _ => {}
        }
    }
}

/// One line on stderr, ignoring a closed stderr (nothing is left to tell).
pub(super) fn warn(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
