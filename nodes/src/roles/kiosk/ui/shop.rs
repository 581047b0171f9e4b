//! Drawing the downloads screens: the first screen's choice, the shop (tabs, the list,
//! the item's page with its cover drawn like a photo preview), and the write's
//! progress with "do not remove your card".

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Widget};

use super::{centred, focus_index, render_buttons, theme, title};
use crate::roles::kiosk::app::{App, Writing, TABS};
use crate::roles::kiosk::cardwrite::mb;
use crate::roles::kiosk::i18n::Lang;
use crate::roles::kiosk::thumbs::HalfBlocks;

pub(super) fn render_start(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [_, text, _, buttons, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    centred(
        vec![
            Line::from(Span::styled(l.start_title(), theme::title())),
            Line::from(""),
            Line::from(Span::styled(l.start_hint(), theme::muted())),
        ],
        text,
        buf,
    );
    render_buttons(
        &[l.start_prints(), l.start_downloads()],
        focus_index(app),
        buttons,
        buf,
    );
}

fn name(l: Lang, ja: &str, en: &str) -> String {
    match l {
        Lang::Ja => ja.to_string(),
        Lang::En => en.to_string(),
    }
}

pub(super) fn render_shop(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [head, tabs, main, basket, buttons] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    // The title, and the search.
    let search = if app.session.searching || !app.session.query.is_empty() {
        let cursor = if app.session.searching { "▏" } else { "" };
        Span::styled(
            format!("  {}: {}{cursor}", l.search_label(), app.session.query),
            Style::new().fg(theme::ACCENT),
        )
    } else {
        Span::styled(format!("  {}", l.search_hint()), theme::muted())
    };
    let mut line = title(l.shop_title());
    line.spans.push(search);
    Paragraph::new(line).render(head, buf);
    // The kinds.
    let mut spans = vec![Span::raw(" ")];
    for (i, kind) in TABS.iter().enumerate() {
        let label = format!(" {} ", l.kind_tab(*kind));
        spans.push(if i == app.session.shop_tab {
            Span::styled(label, theme::focused())
        } else {
            Span::styled(label, Style::new().add_modifier(Modifier::REVERSED))
        });
        spans.push(Span::raw(" "));
    }
    Paragraph::new(Line::from(spans)).render(tabs, buf);

    let [list, page] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(34)]).areas(main);
    let view = app.shop_view();
    let rows = usize::from(list.height.saturating_sub(2)).max(1);
    let cursor = app.session.shop_cursor.min(view.len().saturating_sub(1));
    let top = cursor.saturating_sub(rows - 1);
    let mut lines = Vec::new();
    if view.is_empty() {
        lines.push(Line::from(Span::styled(l.shop_empty(), theme::muted())));
    }
    for (row, &i) in view.iter().enumerate().skip(top).take(rows) {
        let Some(s) = app.shop.get(i) else { continue };
        let mark = if app.in_basket(s) { "✓" } else { " " };
        let price = l.money(s.item.price);
        let title = name(l, &s.item.title.ja, &s.item.title.en);
        let width = usize::from(list.width.saturating_sub(4));
        let room = width.saturating_sub(price.chars().count() + 3);
        let shown: String = title.chars().take(room / 2 * 2).collect();
        let text = format!("{mark} {shown}");
        let pad = width
            .saturating_sub(unicode_width::UnicodeWidthStr::width(text.as_str()) + price.len());
        let style = if row == cursor && focus_index(app).is_none() {
            theme::focused()
        } else if app.in_basket(s) {
            Style::new().fg(theme::PICKED)
        } else {
            Style::new()
        };
        lines.push(Line::from(Span::styled(
            format!("{text}{}{price}", " ".repeat(pad)),
            style,
        )));
    }
    Paragraph::new(lines)
        .block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(theme::muted()),
        )
        .render(list, buf);

    // The item's page: its cover, drawn as photo previews are, and its facts.
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme::muted());
    let inner = block.inner(page);
    block.render(page, buf);
    if let Some(s) = app.shop_current() {
        let cover_h = inner.height.saturating_sub(7).min(inner.width / 2);
        let cover = Rect {
            height: cover_h,
            ..inner
        };
        if let Some(thumb) = &s.cover {
            let w = (cover_h * 2).min(inner.width);
            let spot = Rect {
                x: inner.x + (inner.width - w) / 2,
                width: w,
                ..cover
            };
            HalfBlocks { thumb }.render(spot, buf);
        }
        let artist = name(l, &s.item.artist.ja, &s.item.artist.en);
        let mut facts = vec![
            Line::from(Span::styled(
                name(l, &s.item.title.ja, &s.item.title.en),
                theme::title(),
            )),
            Line::from(format!("{}: {artist}", l.artist_label())),
            Line::from(format!(
                "{}: {} MB   {}: {}",
                l.size_label(),
                mb(s.item.size),
                l.price_label(),
                l.money(s.item.price)
            )),
        ];
        if let Some(room) = app.room_after_basket() {
            facts.push(Line::from(Span::styled(
                format!("{}: {} MB", l.free_on_card(), mb(room)),
                theme::muted(),
            )));
        }
        facts.push(Line::from(if app.in_basket(s) {
            Span::styled(l.in_basket(), Style::new().fg(theme::PICKED))
        } else {
            Span::styled(l.add_to_basket(), theme::muted())
        }));
        let text = Rect {
            y: inner.y + cover_h,
            height: inner.height.saturating_sub(cover_h),
            ..inner
        };
        Paragraph::new(facts).render(text, buf);
    }

    let items = app.session.basket.len();
    Paragraph::new(Line::from(Span::styled(
        format!(
            " {}",
            l.basket_summary(items, &l.money(app.total().unwrap_or(app.basket_total())))
        ),
        Style::new().fg(theme::ACCENT),
    )))
    .render(basket, buf);
    let [back, photos, pay] = l.shop_buttons();
    render_buttons(&[back, photos, pay], focus_index(app), buttons, buf);
}

pub(super) fn render_writing(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let writing = app.session.writing.clone().unwrap_or(Writing::Starting);
    let ratio = match &writing {
        Writing::Starting => 0.0,
        Writing::Fetching { done, total } => 0.2 * frac(*done, *total),
        Writing::Paying => 0.2,
        Writing::Writing { done, total } => 0.25 + 0.7 * frac(*done, *total),
        Writing::Finishing => 0.97,
    };
    let [_, warn, _, head, gauge, stage, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    Paragraph::new(Line::from(Span::styled(
        format!("⚠  {}  ⚠", l.do_not_remove()),
        Style::new().fg(theme::BAD).add_modifier(Modifier::BOLD),
    )))
    .alignment(Alignment::Center)
    .render(warn, buf);
    Paragraph::new(Line::from(Span::styled(l.writing_title(), theme::title())))
        .alignment(Alignment::Center)
        .render(head, buf);
    super::progress_gauge(ratio, gauge, buf);
    Paragraph::new(l.writing_stage(&writing))
        .alignment(Alignment::Center)
        .render(stage, buf);
}

fn frac(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        done as f64 / total as f64
    }
}
