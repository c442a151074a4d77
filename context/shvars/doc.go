// Package shvars reads the context.sh file that OpenNebula puts on the
// context medium and turns it into ordered variables, without executing
// anything.
//
// # Why nothing is executed
//
// one-context sources context.sh with a shell. Anything that reaches the file
// (a template attribute sent as XML, a corrupted or hostile medium) then runs
// as root at boot: $(...) and backquotes run commands, "> file" truncates
// files, a bare word is a command. This package accepts only the small part of
// sh that assigns constant strings and rejects the rest, line by line, with
// the file, line and variable name. Nothing is expanded, substituted or run.
//
// # The dialect
//
// oned writes a comment header and then one NAME='value' per variable, sorted
// by name. Inside the value every single quote is written as four bytes
// (close the quote, an escaped quote, open again):
//
//	'\''
//
// and nothing else is escaped; values may span lines and may hold CR. On top of that
// the parser accepts what sh gives a constant meaning, so hand-written files
// still read the way sh reads them:
//
//   - NAME is [A-Za-z_][A-Za-z0-9_]*, directly followed by "=".
//   - The value is a sequence of: '...' (taken as is, "\" has no meaning),
//     \x outside quotes (the byte x itself), "..." holding no $, ` or \,
//     and plain bytes other than blanks, quotes, \ $ ` ; & | < > ( ) and CR.
//     An unquoted ~ at the start of the value or after an unquoted ":" is
//     rejected, because sh would replace it by $HOME.
//   - A "#" inside a value is part of it; after blanks it starts a comment.
//   - Blank lines, comments, leading blanks and trailing blanks are ignored.
//   - A name defined twice keeps its later value, as in sh.
//
// Everything else is an *Error: command substitution, expansions, bare words
// and commands (export included), invalid names, spaces around "=", ";" and
// second statements, redirections, unterminated quotes, NUL bytes, CR outside
// quotes (Windows line endings), backslash-newline, and values that are not
// valid UTF-8. After an error the parser skips to the end of that logical
// line and goes on, so the caller sees every good variable and every bad line;
// whether one bad line fails the whole file is the caller's policy.
//
// Values are substrings of one copy of the input, so a returned Vars keeps
// that copy alive. Input larger than MaxFileSize is refused before parsing.
//
// Quote and Format write the same dialect back, for env files that other
// tools read with Parse or source with sh.
package shvars
