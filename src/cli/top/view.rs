//! The frame `top` draws from [`Figures`]: a header line (address,
//! health, interval, the last error), the table of listener instances
//! (scrolled by the keys), the intake panel (one block of two lines per
//! organization) and a line of keys. Sized for 80×24: the table's columns
//! take 61 cells, the name the rest. [`plain_frame`] draws the same frame
//! into a buffer and returns its text, for `--once`.

use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

use super::figures::{Figures, InstanceFigures, IntakeFigures};
use crate::metrics::CircuitState;

/// Rows of the frame around the instances: header, the table's borders
/// and column titles, the key line.
const CHROME_ROWS: u16 = 1 + 3 + 1;

/// What one frame shows.
pub(crate) struct View<'a> {
    /// The daemon's address.
    pub(crate) address: &'a str,
    /// Time between scrapes.
    pub(crate) interval: Duration,
    /// The figures.
    pub(crate) figures: &'a Figures,
    /// Instances scrolled past.
    pub(crate) scroll: usize,
    /// The last scrape's failure, if it failed.
    pub(crate) error: Option<&'a str>,
}

/// Rows the intake panel takes.
fn intake_rows(figures: &Figures) -> u16 {
    2 + 2 * figures.intake.len().max(1) as u16
}

/// Rows a frame needs to show every instance.
pub(crate) fn full_height(figures: &Figures) -> u16 {
    CHROME_ROWS + intake_rows(figures) + figures.instances.len().max(1) as u16
}

/// How many instance rows fit in a frame of `height` rows.
pub(crate) fn visible_instances(figures: &Figures, height: u16) -> usize {
    usize::from(height.saturating_sub(CHROME_ROWS + intake_rows(figures)))
}

/// Draws `view` over the whole frame.
pub(crate) fn draw(frame: &mut Frame<'_>, view: &View<'_>) {
    let [header, table, intake, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(intake_rows(view.figures)),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(view), header);
    draw_instances(frame, table, view);
    draw_intake(frame, intake, view.figures);
    frame.render_widget(
        Paragraph::new(" q quit   ↑/↓ j/k scroll   PgUp/PgDn page")
            .style(Style::default().add_modifier(Modifier::DIM)),
        keys,
    );
}

fn header_line<'a>(view: &View<'a>) -> Paragraph<'a> {
    let status = view.figures.status.as_deref().unwrap_or("?");
    let colour = match status {
        "healthy" => Color::Green,
        "degraded" | "starting" => Color::Yellow,
        _ => Color::Red,
    };
    let mut spans = vec![
        Span::styled(" top ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(view.address.to_owned()),
        Span::raw("  "),
        Span::styled(status.to_owned(), Style::default().fg(colour)),
        Span::raw(format!("  every {}", seconds(view.interval.as_secs_f64()))),
    ];
    if let Some(e) = view.error {
        spans.push(Span::styled(
            format!("  {e}"),
            Style::default().fg(Color::Red),
        ));
    }
    Paragraph::new(Line::from(spans))
}

fn draw_instances(frame: &mut Frame<'_>, area: Rect, view: &View<'_>) {
    let all = &view.figures.instances;
    let fit = usize::from(area.height.saturating_sub(3)).max(1);
    let scroll = view.scroll.min(all.len().saturating_sub(fit));
    let shown = all.iter().skip(scroll).take(fit);
    let several = all.iter().any(|i| !i.org.is_empty());
    let rows: Vec<Row<'_>> = shown.map(|i| instance_row(i, several)).collect();
    let title = if all.len() > fit {
        format!(
            " instances {}-{} of {} ",
            scroll + 1,
            (scroll + fit).min(all.len()),
            all.len()
        )
    } else {
        format!(" instances ({}) ", all.len())
    };
    let header = Row::new([
        "LISTENER", "RUNS/S", "FAIL/S", "P50", "P99", "FLIGHT", "RETRY", "CIRCUIT", "DEAD",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Min(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(5),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
}

fn instance_row(i: &InstanceFigures, several: bool) -> Row<'static> {
    let name = if several {
        format!("{}/{}", i.org, i.listener)
    } else {
        i.listener.clone()
    };
    let failing = i.failures_per_s.is_some_and(|f| f > 0.0);
    let fail_style = if failing {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    let circuit_style = match i.circuit {
        Some(CircuitState::Open) => Style::default().fg(Color::Red),
        Some(CircuitState::HalfOpen) => Style::default().fg(Color::Yellow),
        Some(CircuitState::Disabled) => Style::default().fg(Color::Magenta),
        _ => Style::default(),
    };
    Row::new([
        Cell::from(name),
        Cell::from(rate(i.runs_per_s)),
        Cell::from(rate(i.failures_per_s)).style(fail_style),
        Cell::from(i.p50.map_or_else(dash, seconds)),
        Cell::from(i.p99.map_or_else(dash, seconds)),
        Cell::from(count(i.in_flight)),
        Cell::from(count(i.retries_waiting)),
        Cell::from(i.circuit.map_or("-", CircuitState::as_str)).style(circuit_style),
        Cell::from(count(i.dead_letters)),
    ])
}

fn draw_intake(frame: &mut Frame<'_>, area: Rect, figures: &Figures) {
    let mut lines = Vec::new();
    for f in &figures.intake {
        lines.extend(intake_lines(f));
    }
    if lines.is_empty() {
        lines.push(Line::from(" no intake metrics"));
    }
    let block = Block::default().borders(Borders::ALL).title(" intake ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn intake_lines(f: &IntakeFigures) -> [Line<'static>; 2] {
    let org = if f.org.is_empty() {
        String::new()
    } else {
        format!("{}: ", f.org)
    };
    let last_poll = match f.last_poll_age {
        Some(age) => format!("{} ago", seconds(age)),
        None => "never".to_owned(),
    };
    let budget = f
        .rate_limit_remaining
        .map_or_else(|| "unknown".to_owned(), |r| format!("{r} left"));
    [
        Line::from(format!(
            " {org}events/s {}  queue lag p50 {}  backlog {}",
            rate(f.events_per_s),
            f.lag_p50.map_or_else(dash, seconds),
            count(f.backlog),
        )),
        Line::from(format!(
            " last poll {last_poll}  polls/s {}  errors/s {}  rate limit {budget}",
            rate(f.polls_per_s),
            rate(f.poll_errors_per_s),
        )),
    ]
}

fn dash() -> String {
    "-".to_owned()
}

/// A rate: `-` before a second scrape, else one decimal (none from 1,000).
fn rate(r: Option<f64>) -> String {
    match r {
        None => dash(),
        Some(r) if r >= 1000.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

fn count(n: Option<i64>) -> String {
    n.map_or_else(dash, |n| n.to_string())
}

/// A duration in seconds, with the unit that keeps it short.
fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 0.01 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0}ms", s * 1e3)
    } else if s < 100.0 {
        format!("{s:.1}s")
    } else {
        format!("{s:.0}s")
    }
}

/// The frame of `view`, `width` wide and as tall as every instance needs,
/// as plain text (trailing blanks trimmed).
///
/// # Errors
///
/// Never in practice: drawing into a buffer does no I/O.
pub(crate) fn plain_frame(view: &View<'_>, width: u16) -> std::io::Result<String> {
    let height = full_height(view.figures);
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;
    terminal.draw(|f| draw(f, view))?;
    Ok(buffer_text(terminal.backend().buffer()))
}

/// The text of `buffer`, one line per row.
pub(crate) fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
