//! The events of a streamed answer (native SSE, the JSON array, OpenAI chunks), built one
//! at a time while the body is sent, so that a stream of thousands of 16 KiB events —
//! the kind a test of a client that stops reading needs — costs no more memory than one.

use std::time::Duration;

use bytes::Bytes;

use super::bodies::Answer;
use super::errors::ApiError;
use super::openai::{self, ChatPrompt};
use super::reply::{Reply, JSON, SSE};
use super::scenario::Scenario;
use super::stream::{array_element, array_frames, compact_event, openai_event, sse_event};

/// Stream sizing and pacing for one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    pub chunks: usize,
    pub gap: Duration,
    /// Text bytes per event; `None` splits the answer evenly over the events.
    pub text_bytes: Option<usize>,
}

/// Padding after the answer when events have a fixed text size: words, so usage counts
/// grow as they would with real text.
const FILLER: &str = " lorem ipsum dolor sit amet";

/// How a stream scenario changes the end of a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Clean,
    ErrorEvent,
    Drop,
}

impl Ending {
    fn of(scenario: Option<&Scenario>) -> Self {
        match scenario {
            Some(Scenario::StreamMidwayError) => Ending::ErrorEvent,
            Some(Scenario::StreamDrop) => Ending::Drop,
            _ => Ending::Clean,
        }
    }

    /// Events in the whole answer, and events to emit: all of them, or the 2 good ones
    /// before a failure.
    fn plan(self, shape_single: bool, chunks: usize) -> (usize, usize) {
        match (self, shape_single) {
            (_, true) => (1, 1),
            (Ending::Clean, false) => (chunks.max(1), chunks.max(1)),
            (_, false) => (chunks.max(3), 2),
        }
    }
}

/// The text of each event, in order.
pub(crate) enum Pieces {
    /// The answer split evenly over the events.
    Even(std::vec::IntoIter<String>),
    /// `size` bytes per event: the answer, then filler words, cut at `size` multiples.
    Sized {
        head: String,
        size: usize,
        offset: usize,
    },
}

impl Pieces {
    pub fn new(text: String, total: usize, size: Option<usize>) -> Self {
        match size {
            None => {
                let pieces: Vec<String> =
                    split(&text, total).into_iter().map(str::to_owned).collect();
                Pieces::Even(pieces.into_iter())
            }
            Some(size) => Pieces::Sized {
                head: text,
                size,
                offset: 0,
            },
        }
    }

    pub fn next_piece(&mut self) -> String {
        match self {
            Pieces::Even(pieces) => pieces.next().unwrap_or_default(),
            Pieces::Sized { head, size, offset } => {
                let piece = sized_piece(head, *offset, *size);
                *offset = offset.saturating_add(*size);
                piece
            }
        }
    }
}

/// Bytes `start..start + size` of `head` followed by endless filler. A cut inside a
/// multi-byte character of `head` moves back to its start, so with a non-ASCII prompt a
/// piece can be a few bytes off `size`; the pieces still join up to the whole text.
fn sized_piece(head: &str, start: usize, size: usize) -> String {
    let end = start.saturating_add(size);
    let floor = |i: usize| {
        let mut i = i.min(head.len());
        while !head.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut piece = String::with_capacity(size + 3);
    piece.push_str(&head[floor(start)..floor(end)]);
    let mut pos = start.max(head.len());
    while pos < end {
        let at = (pos - head.len()) % FILLER.len();
        let take = (FILLER.len() - at).min(end - pos);
        piece.push_str(&FILLER[at..at + take]);
        pos += take;
    }
    piece
}

/// Splits `text` into `n` pieces on char boundaries, as even as the text allows; pieces
/// may be empty when the text is shorter than `n`.
pub(crate) fn split(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|i| {
            let start = bounds[i * chars / n];
            let end = bounds[(i + 1) * chars / n];
            &text[start..end]
        })
        .collect()
}

/// Words of the text so far, fed piece by piece; the same count as `count_words` on the
/// whole text, without keeping it.
#[derive(Default)]
pub(crate) struct Words {
    count: u32,
    in_word: bool,
}

impl Words {
    pub fn add(&mut self, piece: &str) -> u32 {
        for c in piece.chars() {
            let space = c.is_whitespace();
            if !space && !self.in_word {
                self.count = self.count.saturating_add(1);
            }
            self.in_word = !space;
        }
        self.count
    }
}

/// A native stream: SSE events (`sse`) or the elements of a JSON array.
pub(crate) fn native_stream(
    answer: Answer,
    text: String,
    sse: bool,
    scenario: Option<&Scenario>,
    pace: Pace,
) -> Reply {
    let ending = Ending::of(scenario);
    let lf = matches!(scenario, Some(Scenario::LfFraming));
    let (total, emit) = ending.plan(answer.shape.single_event(), pace.chunks);
    let mut pieces = Pieces::new(text, total, pace.text_bytes);
    let mut words = Words::default();
    let responses = (0..emit).map(move |i| {
        let piece = pieces.next_piece();
        let so_far = words.add(&piece);
        let resp = answer.response(&piece, so_far, i == 0, i + 1 == total);
        if sse {
            sse_event(&resp, lf)
        } else {
            Bytes::from(array_element(&resp))
        }
    });
    let error = (ending == Ending::ErrorEvent).then(|| {
        let err = ApiError::internal();
        if sse {
            compact_event(&err.envelope(), lf)
        } else {
            Bytes::from(array_element(&err.envelope()))
        }
    });
    let count = emit + usize::from(error.is_some());
    let events = responses.chain(error);
    let mut reply = if sse {
        Reply::frames(SSE, events)
    } else {
        let elements = events.map(|b| b.to_vec());
        Reply::frames(JSON, array_frames(elements, count, ending != Ending::Drop))
    };
    if ending == Ending::Drop {
        reply.make_drop();
    }
    reply
}

/// An OpenAI-compatible stream: `chat.completion.chunk` events, then `[DONE]`.
pub(crate) fn openai_stream(
    id: String,
    chat: ChatPrompt,
    text: String,
    scenario: Option<&Scenario>,
    pace: Pace,
) -> Reply {
    let ending = Ending::of(scenario);
    let (total, emit) = ending.plan(false, pace.chunks);
    let mut pieces = Pieces::new(text, total, pace.text_bytes);
    let mut words = Words::default();
    let chunks = (0..emit).map(move |i| {
        let piece = pieces.next_piece();
        let so_far = words.add(&piece);
        let last = i + 1 == total;
        let chunk = openai::chunk(&id, &chat.model, &piece, so_far, chat.tokens, last);
        openai_event(&chunk)
    });
    let tail = match ending {
        Ending::Clean => Some(Bytes::from_static(b"data: [DONE]\n\n")),
        Ending::ErrorEvent => Some(openai_event(&ApiError::internal().envelope())),
        Ending::Drop => None,
    };
    let mut reply = Reply::frames(SSE, chunks.chain(tail));
    if ending == Ending::Drop {
        reply.make_drop();
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::count_words;

    #[test]
    fn split_covers_the_text_in_n_pieces() {
        let p = split("echo: hello", 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.concat(), "echo: hello");
        assert_eq!(split("é", 3).concat(), "é");
        assert_eq!(split("", 2), vec!["", ""]);
    }

    #[test]
    fn sized_pieces_start_with_the_answer_and_pad_it_with_filler() {
        let mut p = Pieces::new("echo: hi".to_owned(), 4, Some(5));
        let got: Vec<String> = (0..4).map(|_| p.next_piece()).collect();
        assert_eq!(got, ["echo:", " hi l", "orem ", "ipsum"]);
        let mut short = Pieces::new("echo: a long answer".to_owned(), 2, Some(4));
        assert_eq!(short.next_piece() + &short.next_piece(), "echo: a ");
    }

    #[test]
    fn sized_pieces_of_a_non_ascii_answer_join_up_to_valid_text() {
        let head = "echo: ééé";
        let mut p = Pieces::new(head.to_owned(), 6, Some(3));
        let all: String = (0..6).map(|_| p.next_piece()).collect();
        assert!(all.starts_with(head), "{all}");
        assert_eq!(all.len(), 18);
    }

    #[test]
    fn words_counted_piece_by_piece_match_the_whole_text() {
        let text = "echo: one two  three\tfour";
        for n in 1..=text.len() {
            let mut words = Words::default();
            let mut last = 0;
            for piece in split(text, n) {
                last = words.add(piece);
            }
            assert_eq!(last, count_words(text), "{n} pieces");
        }
    }
}
