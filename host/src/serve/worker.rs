//! The generation worker: one thread that owns the model (MLX arrays stay on it) and answers
//! queued requests one at a time, streaming text back over a channel. A request whose channel is
//! closed (the client went away) stops at its next piece of text; stop strings end a reply early
//! and are never sent, even across pieces (text that could still become a stop string is held
//! back until it cannot).

use std::sync::mpsc;

use brain_train::generate::{FinishReason, GenOptions, Generator};
use brain_train::sampling::SamplingOptions;
use brain_train::tokenizer::Message;
use tokio::sync::mpsc::UnboundedSender;

use super::openai::{ChatRequest, Usage};

/// What a request's channel carries, in order: pieces of text, then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Done { finish: &'static str, usage: Usage },
    /// The request could not be answered: `client` when it is the request's fault (its template
    /// rejects the conversation), else the server's.
    Failed { client: bool, message: String },
}

pub struct Job {
    pub id: String,
    pub request: ChatRequest,
    pub events: UnboundedSender<Event>,
}

/// Runs jobs from `jobs` until every sender is gone.
pub fn run(mut g: Generator, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        if job.events.is_closed() {
            tracing::info!("{}: the client left while queued", job.id);
            continue;
        }
        answer(&mut g, job);
    }
}

fn answer(g: &mut Generator, job: Job) {
    let r = &job.request;
    let messages: Vec<Message> = r.messages.iter().map(|(role, content)| Message::new(role, content)).collect();
    let prompt = match g.chat_prompt(&messages) {
        Ok(p) => p,
        Err(e) => {
            let message = format!("the model's chat template cannot render this conversation: {e}");
            let _ = job.events.send(Event::Failed { client: true, message });
            return;
        }
    };
    let opts = GenOptions {
        max_tokens: r.max_tokens,
        sampling: SamplingOptions { temp: r.temperature, top_p: r.top_p, seed: r.seed, logit_bias: r.logit_bias.clone(), ..SamplingOptions::default() },
        // An API client asked for max_tokens and its own stops; brain's loop cut-off is not in
        // the OpenAI contract.
        stop_on_loop: false,
    };
    let mut stops = StopFilter::new(&r.stop);
    let mut client_left = false;
    let result = g.generate_until(&prompt, &opts, &mut |piece| {
        let (out, hit) = stops.push(piece);
        if !out.is_empty() && job.events.send(Event::Text(out)).is_err() {
            client_left = true;
            return false;
        }
        !hit
    });
    match result {
        Ok(gen) => {
            if client_left {
                tracing::warn!("{}: the client went away; generation stopped after {} tokens", job.id, gen.generation_tokens);
                return;
            }
            if !stops.hit {
                let rest = stops.finish();
                if !rest.is_empty() {
                    let _ = job.events.send(Event::Text(rest));
                }
            }
            let finish = match gen.finish_reason {
                FinishReason::Length => "length",
                FinishReason::Stop | FinishReason::Repetition | FinishReason::Cancelled => "stop",
            };
            let _ = job.events.send(Event::Done { finish, usage: Usage { prompt: prompt.len(), completion: gen.generation_tokens } });
        }
        Err(e) => {
            let _ = job.events.send(Event::Failed { client: false, message: format!("generation failed: {e}") });
        }
    }
}

/// Cuts text at the first stop string, holding back a tail that may still grow into one.
pub struct StopFilter {
    stops: Vec<String>,
    text: String,
    sent: usize,
    pub hit: bool,
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        StopFilter { stops: stops.to_vec(), text: String::new(), sent: 0, hit: false }
    }

    /// Adds a piece; returns the text now safe to send and whether a stop string was reached.
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.text.push_str(piece);
        // A stop string can start inside text already held back, never inside text sent.
        let from = self.sent.saturating_sub(self.stops.iter().map(|s| s.len()).max().unwrap_or(0));
        let from = (0..=from).rev().find(|&i| self.text.is_char_boundary(i)).unwrap_or(0);
        if let Some(at) = self.stops.iter().filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i)).min() {
            let out = self.text[self.sent.min(at)..at].to_string();
            self.sent = at;
            self.hit = true;
            return (out, true);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|p| self.text.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let upto = self.text.len() - keep;
        let out = self.text[self.sent.min(upto)..upto].to_string();
        self.sent = self.sent.max(upto);
        (out, false)
    }

    /// What is still held back, at the end of generation.
    pub fn finish(&mut self) -> String {
        let out = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::StopFilter;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            let (o, hit) = f.push(p);
            out.push_str(&o);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn stop_strings_cut_across_pieces_and_are_never_sent() {
        assert_eq!(run(&["END"], &["hello E", "N", "D more"]), ("hello ".into(), true));
        assert_eq!(run(&["END"], &["hello E", "N", "d more"]), ("hello ENd more".into(), false));
        assert_eq!(run(&["\n\n", "STOP"], &["a\n", "\nb"]), ("a".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        // Held-back text that does not become a stop string comes out in order.
        let mut f = StopFilter::new(&["xyz".to_string()]);
        assert_eq!(f.push("abx"), ("ab".to_string(), false));
        assert_eq!(f.push("y"), (String::new(), false));
        assert_eq!(f.push("!"), ("xy!".to_string(), false));
    }
}
