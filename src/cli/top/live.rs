//! The live view: the terminal in raw mode on the alternate screen (put
//! back however the loop ends, by a guard's `Drop`), a scrape every
//! interval, and the keys read on a thread of their own (crossterm's
//! `read` blocks) and handed to the loop over a channel.

use std::io::Stdout;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::mpsc;

use super::client::{DaemonClient, TopError};
use super::figures::{Figures, Snapshot};
use super::view::{draw, visible_instances, View};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Leave.
    Quit,
    /// Scroll by this many rows (negative: up).
    Scroll(isize),
    /// Scroll a page up (-1) or down (1).
    Page(isize),
    /// Draw again (the terminal was resized).
    Redraw,
}

/// The action of a terminal event, if any.
pub(crate) fn action(ev: &Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Scroll(-1)),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Scroll(1)),
            KeyCode::PageUp => Some(Action::Page(-1)),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(Action::Page(1)),
            _ => None,
        },
        Event::Resize(..) => Some(Action::Redraw),
        _ => None,
    }
}

/// The terminal as `top` uses it; put back as it was on drop.
struct Screen(Terminal<CrosstermBackend<Stdout>>);

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(e);
        }
        let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
        terminal.hide_cursor()?;
        Ok(Screen(terminal))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(self.0.backend_mut(), LeaveAlternateScreen);
        let _ = self.0.show_cursor();
    }
}

/// Reads terminal events until the receiver is gone.
fn read_keys(tx: mpsc::UnboundedSender<Action>) {
    while !tx.is_closed() {
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => match event::read() {
                Ok(ev) => {
                    if let Some(a) = action(&ev) {
                        if tx.send(a).is_err() {
                            return;
                        }
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// Runs the live view until a quit key.
///
/// # Errors
///
/// [`TopError::Terminal`] when the terminal cannot be used; a failed
/// scrape is shown in the header and tried again next interval.
pub(crate) async fn run_live(client: &DaemonClient, interval: Duration) -> Result<(), TopError> {
    let mut screen = Screen::enter()?;
    let (tx, mut keys) = mpsc::unbounded_channel();
    std::thread::spawn(move || read_keys(tx));
    let mut tick = tokio::time::interval(interval);
    let mut prev: Option<(Instant, Snapshot)> = None;
    let mut figures = Figures::default();
    let mut error: Option<String> = None;
    let mut scroll = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match client.scrape().await {
                    Ok(snapshot) => {
                        let now = Instant::now();
                        let last = prev.as_ref().map(|(at, s)| (now - *at, s));
                        let elapsed = last.map_or(Duration::ZERO, |(d, _)| d);
                        figures = Figures::between(last.map(|(_, s)| s), &snapshot, elapsed);
                        prev = Some((now, snapshot));
                        error = None;
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            key = keys.recv() => {
                let height = screen.0.size()?.height;
                let page = visible_instances(&figures, height).max(1) as isize;
                match key {
                    None | Some(Action::Quit) => return Ok(()),
                    Some(Action::Scroll(n)) => scroll = scroll.saturating_add_signed(n),
                    Some(Action::Page(n)) => scroll = scroll.saturating_add_signed(n * page),
                    Some(Action::Redraw) => {}
                }
                let most = figures.instances.len().saturating_sub(page as usize);
                scroll = scroll.min(most);
            }
        }
        let view = View {
            address: client.address(),
            interval,
            figures: &figures,
            scroll,
            error: error.as_deref(),
        };
        screen.0.draw(|f| draw(f, &view))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    #[test]
    fn q_quits_and_arrows_and_j_k_scroll() {
        let key = |c| Event::Key(KeyEvent::new(c, KeyModifiers::NONE));
        assert_eq!(action(&key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action(&key(KeyCode::Down)), Some(Action::Scroll(1)));
        assert_eq!(action(&key(KeyCode::Char('j'))), Some(Action::Scroll(1)));
        assert_eq!(action(&key(KeyCode::Up)), Some(Action::Scroll(-1)));
        assert_eq!(action(&key(KeyCode::Char('k'))), Some(Action::Scroll(-1)));
        assert_eq!(action(&key(KeyCode::Char('x'))), None);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(action(&ctrl_c), Some(Action::Quit));
    }
}
