//! Drawing the kiosk: a pure function of [`App`]. Every screen has the same frame: a
//! header (store, the five steps, the language key), the screen's body, one line for a
//! notice, and a footer (keys, network state). Screens fit 80×24 and use more room
//! when the terminal has it.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Gauge, Paragraph, Widget, Wrap};
use unicode_width::UnicodeWidthStr;

use super::app::{
    App, Focus, GridGeometry, Media, Notice, Printing, Problem, Screen, Sending, CELL,
    MAX_WRONG_PINS,
};
use super::i18n::Lang;
use super::receipt::{qr_modules, Outcome};
use super::thumbs::{HalfBlocks, Thumb};
use printmesh_protocol::messages::PaymentMethod;

mod shop;

mod theme {
    use ratatui::style::{Color, Modifier, Style};

    pub const HEADER_BG: Color = Color::Rgb(28, 58, 86);
    pub const ACCENT: Color = Color::Rgb(244, 190, 80);
    pub const PICKED: Color = Color::Rgb(110, 200, 140);
    pub const MUTED: Color = Color::Rgb(140, 150, 160);
    pub const WARN: Color = Color::Rgb(250, 200, 90);
    pub const BAD: Color = Color::Rgb(240, 120, 110);

    pub fn title() -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn focused() -> Style {
        Style::new()
            .fg(Color::Black)
            .bg(ACCENT)
            .add_modifier(Modifier::BOLD)
    }

    pub fn muted() -> Style {
        Style::new().fg(MUTED)
    }
}

/// The whole screen. `preview` is the preview image in the terminal's richer graphics
/// protocol when it has one; without it the preview is drawn in half blocks.
pub struct Ui<'a> {
    pub app: &'a App,
    pub preview: Option<&'a ratatui_image::protocol::Protocol>,
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Ui {
            app: self,
            preview: None,
        }
        .render(area, buf)
    }
}

/// Which step of the five a screen belongs to (None: no step bar).
fn step_of(screen: &Screen) -> Option<usize> {
    match screen {
        Screen::Select => Some(0),
        Screen::Sizes => Some(1),
        Screen::Total => Some(2),
        Screen::Method
        | Screen::Card
        | Screen::Pin
        | Screen::Sending
        | Screen::Writing
        | Screen::Problem(_) => Some(3),
        Screen::Done | Screen::Receipt => Some(4),
        _ => None,
    }
}

/// The preview panel's image area for a terminal size (the runtime sizes the richer
/// protocol's image to it).
pub fn preview_area(width: u16, height: u16) -> Rect {
    let [_, body, _, _] = frame_areas(Rect::new(0, 0, width, height));
    let [_, main, _] = select_areas(body);
    let [_, panel] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(super::app::PREVIEW_PANEL_WIDTH),
    ])
    .areas(main);
    preview_image_area(panel)
}

fn frame_areas(area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

fn select_areas(body: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(body)
}

fn preview_image_area(panel: Rect) -> Rect {
    let inner = Block::bordered().inner(panel);
    Rect {
        height: inner.height.saturating_sub(6).min(inner.width / 2 + 1),
        ..inner
    }
}

impl Widget for Ui<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let l = app.lang;
        Clear.render(area, buf);
        let [header, body, notice, footer] = frame_areas(area);
        render_header(app, header, buf);
        match &app.screen {
            Screen::Insert => render_insert(app, body, buf),
            Screen::Start => shop::render_start(app, body, buf),
            Screen::Shop => shop::render_shop(app, body, buf),
            Screen::Writing => shop::render_writing(app, body, buf),
            Screen::Select => render_select(app, body, buf, self.preview),
            Screen::Sizes => render_sizes(app, body, buf),
            Screen::Total => render_total(app, body, buf),
            Screen::Method => render_method(app, body, buf),
            Screen::Card => render_card(app, body, buf),
            Screen::Pin => render_pin(app, body, buf),
            Screen::Sending => render_sending(app, body, buf),
            Screen::Problem(p) => render_problem(app, p, body, buf),
            Screen::Done => render_done(app, body, buf),
            Screen::Receipt => render_receipt(app, body, buf),
            Screen::Thanks => render_thanks(app, body, buf),
            Screen::StaffPin => render_staff_pin(app, body, buf),
            Screen::Counter => render_counter(app, body, buf),
        }
        if let Some(n) = &app.notice {
            let (text, style) = notice_text(l, n);
            Paragraph::new(Line::from(Span::styled(format!(" {text}"), style))).render(notice, buf);
        }
        let keys = match app.screen {
            Screen::Select => l.select_keys(),
            Screen::Sizes => l.sizes_keys(),
            Screen::Counter => l.counter_keys(),
            Screen::Insert | Screen::Sending | Screen::Writing | Screen::Thanks => "",
            _ => l.footer_keys(),
        };
        let net = if app.online { l.online() } else { l.offline() };
        let net_style = if app.online {
            Style::new().fg(theme::PICKED)
        } else {
            Style::new().fg(theme::WARN)
        };
        let pad = usize::from(footer.width).saturating_sub(keys.width() + net.width() + 2);
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {keys}"), theme::muted()),
            Span::raw(" ".repeat(pad)),
            Span::styled(format!("{net} "), net_style),
        ]))
        .render(footer, buf);
    }
}

fn notice_text(l: Lang, n: &Notice) -> (String, Style) {
    let warn = Style::new().fg(theme::WARN);
    let bad = Style::new().fg(theme::BAD);
    let ok = Style::new().fg(theme::PICKED);
    match n {
        Notice::MediaRemoved => (l.media_removed().into(), warn),
        Notice::TimedOut => (l.session_timed_out().into(), warn),
        Notice::NoPhotos => (l.no_photos().into(), warn),
        Notice::CardUnreadable(why) => (format!("{}: {why}", l.card_unreadable()), bad),
        Notice::PickOneFirst => (l.pick_one_first().into(), warn),
        Notice::MethodUnavailable => (l.method_unavailable().into(), warn),
        Notice::OfflineOnlyCredit(limit) => (l.offline_only_credit(&l.money(*limit)), warn),
        Notice::OfflineNoPayments => (l.offline_no_payments().into(), warn),
        Notice::CardReadError(_) => (l.card_read_error().into(), bad),
        Notice::SwipeElsewhere => (l.swipe_elsewhere().into(), warn),
        Notice::IcRemoved => (l.ic_removed().into(), warn),
        Notice::PinWrong(left) => (l.pin_wrong(*left), bad),
        Notice::PinTooShort => (l.pin_too_short().into(), warn),
        Notice::StaffPinWrong => (l.staff_pin_wrong().into(), bad),
        Notice::CounterNotReady => (l.counter_not_ready().into(), warn),
        Notice::CounterNone => (l.counter_none().into(), warn),
        Notice::CounterCollected(id) => (format!("{} {id}", l.counter_collected()), ok),
        Notice::CounterFailed(why) => (why.clone(), bad),
        Notice::OneCompanyAtATime => (l.one_company_at_a_time().into(), warn),
        Notice::BasketFull(n) => (l.basket_full(*n), warn),
        Notice::NoRoomOnCard(bytes) => (l.no_room_on_card(*bytes), warn),
        Notice::PrintsNotPaid(why) => (l.prints_not_paid(why), bad),
    }
}

fn render_header(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let style = Style::new().bg(theme::HEADER_BG).fg(Color::White);
    buf.set_style(area, style);
    let step = step_of(&app.screen);
    let left = match step {
        // The steps need the room: the store's name is enough.
        Some(_) => format!(" {}", app.cfg.store_name),
        None => format!(" {} · {}", app.cfg.store_name, l.app_title()),
    };
    let mut spans = vec![Span::styled(
        left.clone(),
        style.add_modifier(Modifier::BOLD),
    )];
    let mut used = left.width();
    if let Some(step) = step {
        let mut steps = Vec::new();
        for (i, name) in l.steps().iter().enumerate() {
            let s = if i == step {
                Style::new().fg(theme::ACCENT).bg(theme::HEADER_BG).bold()
            } else if i < step {
                style
            } else {
                Style::new().fg(theme::MUTED).bg(theme::HEADER_BG)
            };
            if i > 0 {
                steps.push(Span::styled(
                    " › ",
                    Style::new().fg(theme::MUTED).bg(theme::HEADER_BG),
                ));
            }
            steps.push(Span::styled(name.to_string(), s));
        }
        let width: usize = steps.iter().map(|s| s.content.width()).sum();
        let lang = l.switch_label().width() + 1;
        let room = usize::from(area.width).saturating_sub(used + lang);
        if width + 2 <= room {
            spans.push(Span::styled(" ".repeat((room - width) / 2), style));
            used += (room - width) / 2 + width;
            spans.extend(steps);
        }
    }
    let label = l.switch_label();
    let pad = usize::from(area.width).saturating_sub(used + label.width() + 1);
    spans.push(Span::styled(" ".repeat(pad), style));
    spans.push(Span::styled(format!("{label} "), style));
    Paragraph::new(Line::from(spans)).render(area, buf);
}

fn title(text: &str) -> Line<'static> {
    Line::from(Span::styled(format!(" {text}"), theme::title()))
}

fn button(label: &str, focused: bool) -> Span<'static> {
    let text = format!("  {label}  ");
    if focused {
        Span::styled(text, theme::focused())
    } else {
        Span::styled(text, Style::new().add_modifier(Modifier::REVERSED))
    }
}

/// A row of buttons, centred; `focus` is the index of the focused one.
fn render_buttons(labels: &[&str], focus: Option<usize>, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("     "));
        }
        spans.push(button(label, focus == Some(i)));
    }
    Paragraph::new(Line::from(spans))
        .alignment(Alignment::Center)
        .render(area, buf);
}

fn focus_index(app: &App) -> Option<usize> {
    match app.session.focus {
        Focus::Button(b) => Some(b),
        Focus::Body => None,
    }
}

/// A paragraph of centred lines in the middle of `area`.
fn centred(lines: Vec<Line<'static>>, area: Rect, buf: &mut Buffer) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    // Lines wider than the area wrap: count the rows they will take.
    let width = usize::from(area.width);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let h = u16::try_from(rows).unwrap_or(u16::MAX).min(area.height);
    let top = area.y + (area.height - h) / 2;
    Paragraph::new(lines)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(Rect::new(area.x, top, area.width, h.max(1)), buf);
}

// ---------------------------------------------------------------------- S501

fn render_insert(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let status = match &app.media {
        Media::Scanning { .. } => Line::from(Span::styled(l.reading_card(), theme::muted())),
        Media::Ready(_) => Line::from(Span::styled(
            l.insert_card_present(),
            Style::new().fg(theme::ACCENT),
        )),
        _ => Line::from(""),
    };
    let slot = Style::new().fg(theme::MUTED);
    centred(
        vec![
            Line::from(Span::styled(l.insert_title(), theme::title())),
            Line::from(""),
            Line::from(Span::styled(l.insert_hint(), theme::muted())),
            Line::from(""),
            Line::from(Span::styled("┌──────────────────────┐", slot)),
            Line::from(Span::styled("│   ▄▄▄▄▄▄▄▄▄▄▄▄▄▄▄▄   │", slot)),
            Line::from(Span::styled("└──────────────────────┘", slot)),
            Line::from(Span::styled("▼", Style::new().fg(theme::ACCENT).bold())),
            Line::from(""),
            status,
            Line::from(""),
            Line::from(Span::styled(l.switch_label(), theme::muted())),
            Line::from(if app.cfg.demo_cards.is_empty() {
                Span::raw("")
            } else {
                Span::styled(l.demo_media_hint(), Style::new().fg(theme::WARN))
            }),
        ],
        area,
        buf,
    );
}

// ---------------------------------------------------------------------- S502

fn render_select(
    app: &App,
    area: Rect,
    buf: &mut Buffer,
    rich: Option<&ratatui_image::protocol::Protocol>,
) {
    let l = app.lang;
    let Some(card) = app.card_view() else {
        return;
    };
    let [head, main, buttons] = select_areas(area);
    let mut head_line = vec![Span::styled(
        format!(" {}", l.select_title()),
        theme::title(),
    )];
    if app.session.camera_marked {
        head_line.push(Span::styled(
            format!("  {}", l.camera_marked()),
            theme::muted(),
        ));
    }
    Paragraph::new(Line::from(head_line)).render(head, buf);
    let [grid_area, panel] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(super::app::PREVIEW_PANEL_WIDTH),
    ])
    .areas(main);
    let g = GridGeometry::for_size(app.size.0, app.size.1);
    let visible = app.visible();
    for index in visible {
        let k = index - app.session.top_row * g.cols;
        let (col, row) = ((k % g.cols) as u16, (k / g.cols) as u16);
        let cell = Rect::new(
            grid_area.x + col * CELL.0,
            grid_area.y + row * CELL.1,
            CELL.0,
            CELL.1,
        )
        .intersection(grid_area);
        render_cell(app, card, index, cell, buf);
    }
    render_preview_panel(app, card, panel, buf, rich);
    let picked = app.session.picks.len();
    let summary = format!(
        "{}   {}",
        l.picked_count(picked, app.prints()),
        app.total().map(|t| l.money(t)).unwrap_or_default()
    );
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(34)]).areas(buttons);
    render_buttons(&[l.back(), l.next()], focus_index(app), left, buf);
    Paragraph::new(Line::from(Span::styled(
        summary,
        Style::new().fg(theme::PICKED),
    )))
    .alignment(Alignment::Right)
    .render(right, buf);
}

fn render_cell(app: &App, card: &super::app::CardView, index: usize, cell: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let focused = index == app.session.cursor && app.session.focus == Focus::Body;
    let pick = app.session.picks.get(&index);
    let (border, border_style) = if focused {
        (BorderType::Thick, Style::new().fg(theme::ACCENT))
    } else if pick.is_some() {
        (BorderType::Rounded, Style::new().fg(theme::PICKED))
    } else {
        (BorderType::Rounded, theme::muted())
    };
    let number = card
        .images
        .get(index)
        .map(|m| m.file_name.get(4..8).unwrap_or(&m.file_name).to_string())
        .unwrap_or_default();
    let mut block = Block::bordered()
        .border_type(border)
        .border_style(border_style)
        .title_bottom(Line::from(format!(" {number} ")).alignment(Alignment::Center));
    if let Some(p) = pick {
        block = block.title_top(
            Line::from(Span::styled(
                format!(" ✓ {} ", l.copies(p.quantity)),
                Style::new().fg(Color::Black).bg(theme::PICKED).bold(),
            ))
            .alignment(Alignment::Right),
        );
    }
    let inner = block.inner(cell);
    block.render(cell, buf);
    match (card.thumbs.get(index), card.infos.get(index)) {
        (Some(Some(thumb)), _) => HalfBlocks { thumb }.render(inner, buf),
        (_, Some(Some(info))) if info.error.is_some() => {
            centred(
                vec![Line::from(Span::styled(
                    format!("× {}", l.unreadable_photo()),
                    Style::new().fg(theme::BAD),
                ))],
                inner,
                buf,
            );
        }
        _ => centred(
            vec![Line::from(Span::styled(
                format!("{}…", l.loading()),
                theme::muted(),
            ))],
            inner,
            buf,
        ),
    }
}

fn render_preview_panel(
    app: &App,
    card: &super::app::CardView,
    panel: Rect,
    buf: &mut Buffer,
    rich: Option<&ratatui_image::protocol::Protocol>,
) {
    let l = app.lang;
    let i = app.session.cursor;
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme::muted())
        .title(format!(" {} ", l.photo_of(i + 1, card.images.len())));
    let inner = block.inner(panel);
    block.render(panel, buf);
    let image_area = preview_image_area(panel);
    let preview: Option<&Thumb> = match &card.preview {
        Some((p, Some(t))) if *p == i => Some(t),
        _ => None,
    };
    match (rich, preview) {
        (Some(protocol), Some(_)) => ratatui_image::Image::new(protocol).render(image_area, buf),
        (None, Some(thumb)) => HalfBlocks { thumb }.render(image_area, buf),
        _ => {
            if let Some(Some(thumb)) = card.thumbs.get(i) {
                HalfBlocks { thumb }.render(image_area, buf);
            }
        }
    }
    let info = card.infos.get(i).and_then(Option::as_ref);
    let name = card
        .images
        .get(i)
        .map(|m| m.file_name.clone())
        .unwrap_or_default();
    let mut lines = vec![Line::from(Span::styled(name, theme::title()))];
    match info {
        Some(info) if info.error.is_some() => {
            lines.push(Line::from(Span::styled(
                l.unreadable_photo(),
                Style::new().fg(theme::BAD),
            )));
        }
        Some(info) => {
            if let Some(t) = &info.taken_at {
                let date = t.get(..10).unwrap_or(t).replace('-', "/");
                lines.push(Line::from(format!("{} {date}", l.taken_on())));
            }
            if let (Some(w), Some(h)) = (info.width, info.height) {
                let (w, h) = if info.orientation >= 5 {
                    (h, w)
                } else {
                    (w, h)
                };
                lines.push(Line::from(Span::styled(format!("{w}×{h}"), theme::muted())));
            }
        }
        None => lines.push(Line::from(Span::styled(
            format!("{}…", l.loading()),
            theme::muted(),
        ))),
    }
    if let Some(p) = app.session.picks.get(&i) {
        lines.push(Line::from(Span::styled(
            format!("✓ {} {}", p.size.code(), l.copies(p.quantity)),
            Style::new().fg(theme::PICKED).bold(),
        )));
    }
    let text_area = Rect {
        y: image_area.y + image_area.height,
        height: inner.height.saturating_sub(image_area.height),
        ..inner
    };
    Paragraph::new(lines).render(text_area, buf);
}

// ---------------------------------------------------------------------- S503

fn render_sizes(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [head, list, total_row, buttons] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    Paragraph::new(title(l.sizes_title())).render(head, buf);
    let lines = app.priced_lines();
    let row_focus = |r: usize| app.session.focus == Focus::Body && app.session.size_row == r;
    let first_size = lines.first().map(|line| line.pick.size);
    let all_same = lines.iter().all(|line| Some(line.pick.size) == first_size);
    let mut rows: Vec<Line> = Vec::new();
    let size_cell = |size: Option<printmesh_protocol::pricing::PrintSize>, focused: bool| {
        let name = size.map(|s| l.size_name(s)).unwrap_or_else(|| "—".into());
        let text = format!("◀ {name:<16} ▶");
        if focused {
            Span::styled(text, theme::focused())
        } else {
            Span::raw(text)
        }
    };
    rows.push(Line::from(vec![
        Span::styled(format!("  {:<20}", l.all_photos()), theme::title()),
        size_cell(if all_same { first_size } else { None }, row_focus(0)),
    ]));
    // Keep the focused row in view.
    let room = usize::from(list.height).saturating_sub(1).max(1);
    let focus_row = app.session.size_row.max(1) - 1;
    let top = focus_row.saturating_sub(room - 1);
    for (k, line) in lines.iter().enumerate().skip(top).take(room) {
        let (name, pick, amount) = (&line.file_name, &line.pick, line.amount);
        let focused = row_focus(k + 1);
        let marker = if focused { "▸ " } else { "  " };
        let qty = format!("{:>3}", pick.quantity);
        let qty_span = if focused {
            Span::styled(qty, theme::focused())
        } else {
            Span::raw(qty)
        };
        let amount = amount.map(|a| l.money(a)).unwrap_or_default();
        rows.push(Line::from(vec![
            Span::raw(format!("{marker}{name:<20}")),
            size_cell(Some(pick.size), focused),
            Span::raw("   × "),
            qty_span,
            Span::raw(format!("   {amount:>10}")),
            Span::raw(if pick.fit == printmesh_protocol::pricing::Fit::Border {
                format!("  {}", l.border_mark())
            } else {
                String::new()
            }),
        ]));
    }
    Paragraph::new(rows).render(list, buf);
    let total = app.total().map(|t| l.money(t)).unwrap_or_default();
    Paragraph::new(Line::from(vec![
        Span::raw(l.picked_count(lines.len(), app.prints())),
        Span::raw("   "),
        Span::styled(format!("{} {total}", l.total_label()), theme::title()),
    ]))
    .alignment(Alignment::Right)
    .render(total_row, buf);
    render_buttons(&[l.back(), l.next()], focus_index(app), buttons, buf);
}

// ---------------------------------------------------------------------- S504

fn render_total(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [head, table, total_row, buttons] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(area);
    Paragraph::new(title(l.total_title())).render(head, buf);
    let col = |s: &str, w: usize, right: bool| {
        let pad = w.saturating_sub(s.width());
        if right {
            format!("{}{s}", " ".repeat(pad))
        } else {
            format!("{s}{}", " ".repeat(pad))
        }
    };
    let mut rows = vec![Line::from(Span::styled(
        format!(
            "  {}{}{}{}{}",
            col(l.column_photo(), 20, false),
            col(l.column_size(), 8, false),
            col(l.column_qty(), 6, true),
            col(l.column_unit(), 12, true),
            col(l.column_amount(), 14, true),
        ),
        theme::muted().add_modifier(Modifier::UNDERLINED),
    ))];
    let lines = app.priced_lines();
    let room = usize::from(table.height).saturating_sub(1);
    let shown = lines.len().min(room);
    let hidden = lines.len() - shown;
    let room_for_items = if hidden > 0 {
        shown.saturating_sub(1)
    } else {
        shown
    };
    for line in lines.iter().take(room_for_items) {
        rows.push(Line::from(format!(
            "  {}{}{}{}{}",
            col(&line.file_name, 20, false),
            col(line.pick.size.code(), 8, false),
            col(&line.pick.quantity.to_string(), 6, true),
            col(&line.unit.map(|u| l.money(u)).unwrap_or_default(), 12, true),
            col(
                &line.amount.map(|a| l.money(a)).unwrap_or_default(),
                14,
                true
            ),
        )));
    }
    if hidden > 0 {
        rows.push(Line::from(Span::styled(
            format!("  … +{}", lines.len() - room_for_items),
            theme::muted(),
        )));
    }
    Paragraph::new(rows).render(table, buf);
    let total = app.total().map(|t| l.money(t)).unwrap_or_default();
    Paragraph::new(vec![
        Line::from(Span::raw(l.picked_count(lines.len(), app.prints()))),
        Line::from(Span::styled(
            format!("{}  {total}", l.total_label()),
            Style::new().fg(theme::ACCENT).bold(),
        )),
    ])
    .alignment(Alignment::Right)
    .render(total_row, buf);
    render_buttons(&[l.back(), l.pay()], focus_index(app), buttons, buf);
}

// ---------------------------------------------------------------------- S505

fn amount_line(app: &App) -> Line<'static> {
    let l = app.lang;
    let total = app.total().map(|t| l.money(t)).unwrap_or_default();
    Line::from(vec![
        Span::styled(format!(" {}  ", l.amount_to_pay()), theme::muted()),
        Span::styled(total, Style::new().fg(theme::ACCENT).bold()),
    ])
}

fn render_method(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [head, amount, list] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(2),
        Constraint::Min(0),
    ])
    .areas(area);
    Paragraph::new(title(l.method_title())).render(head, buf);
    Paragraph::new(amount_line(app)).render(amount, buf);
    let list = list.centered_horizontally(Constraint::Length(56));
    for (i, method) in App::METHODS.iter().enumerate() {
        let y = list.y + (i as u16) * 3;
        if y + 3 > list.y + list.height {
            break;
        }
        let row = Rect::new(list.x, y, list.width, 3);
        let focused = app.session.method_cursor == i;
        let available = app.method_available(*method);
        let style = if focused {
            Style::new().fg(theme::ACCENT).bold()
        } else if available {
            Style::new()
        } else {
            theme::muted()
        };
        let block = Block::bordered()
            .border_type(if focused {
                BorderType::Thick
            } else {
                BorderType::Rounded
            })
            .border_style(style);
        let inner = block.inner(row);
        block.render(row, buf);
        let mut spans = vec![Span::styled(
            format!(" {}  {}", i + 1, l.method_name(*method)),
            style,
        )];
        if !available {
            spans.push(Span::styled(
                format!("  ({})", l.method_unavailable()),
                theme::muted(),
            ));
        }
        Paragraph::new(Line::from(spans)).render(inner, buf);
    }
}

// ---------------------------------------------------------------------- S506

fn render_card(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let ic = app.session.method == Some(PaymentMethod::IcCard);
    let demo = !app.cfg.demo_cards.is_empty();
    let [main, side] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(if demo { 34 } else { 0 }),
    ])
    .areas(area);
    let method = app
        .session
        .method
        .map(|m| l.method_name(m))
        .unwrap_or_default();
    let art = if ic {
        vec![
            "┌──────────────────┐",
            "│ ▒▒               │",
            "│ ▒▒   IC          │",
            "└────────┬─────────┘",
            "         ▼         ",
            "  ═══════════════  ",
        ]
    } else {
        vec![
            "   ┌──────────────────┐",
            "   │██████████████████│",
            "   │                  │",
            "   └──────────────────┘",
            "  ════════════════════▶",
            "",
        ]
    };
    let mut lines = vec![
        Line::from(Span::styled(method.to_string(), theme::muted())),
        Line::from(Span::styled(
            if ic {
                l.insert_ic_title()
            } else {
                l.swipe_title()
            },
            theme::title(),
        )),
        Line::from(""),
    ];
    lines.extend(
        art.into_iter()
            .map(|a| Line::from(Span::styled(a, Style::new().fg(theme::MUTED)))),
    );
    lines.push(Line::from(""));
    lines.push(amount_line(app));
    if ic {
        lines.push(Line::from(Span::styled(l.ic_keep_in(), theme::muted())));
    }
    centred(lines, main, buf);
    if demo {
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(Style::new().fg(theme::WARN))
            .title(format!(" {} ", l.demo_panel_title()));
        let inner = block.inner(side);
        block.render(side, buf);
        let mut rows = vec![Line::from(Span::styled(
            if ic {
                l.demo_panel_hint_ic()
            } else {
                l.demo_panel_hint()
            },
            theme::muted(),
        ))];
        for (i, card) in app.cfg.demo_cards.iter().enumerate().take(9) {
            rows.push(Line::from(Span::styled(
                format!("{} {}", i + 1, card.label),
                Style::new().bold(),
            )));
            rows.push(Line::from(Span::styled(
                format!("  PIN {}", card.pin),
                theme::muted(),
            )));
        }
        Paragraph::new(rows)
            .wrap(Wrap { trim: false })
            .render(inner, buf);
    }
}

// ---------------------------------------------------------------------- S507

fn render_pin(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let card = app
        .session
        .card
        .as_ref()
        .map(|c| format!("{} {}", c.pan.brand(), c.pan.masked()))
        .unwrap_or_default();
    let dots: String = (0..app.session.pin.len()).map(|_| "● ").collect();
    let blanks: String = (app.session.pin.len()..6).map(|_| "_ ").collect();
    let optional = app.session.method == Some(PaymentMethod::Credit)
        && app.cfg.credit_pin == super::app::CreditPin::Optional;
    let mut lines = vec![
        Line::from(Span::styled(card, theme::muted())),
        Line::from(""),
        Line::from(Span::styled(l.pin_title(), theme::title())),
        Line::from(""),
        Line::from(vec![
            Span::styled(dots, Style::new().fg(theme::ACCENT).bold()),
            Span::styled(blanks, theme::muted()),
        ]),
        Line::from(""),
        amount_line(app),
        Line::from(""),
        Line::from(Span::styled(l.pin_hidden(), theme::muted())),
    ];
    if optional {
        lines.push(Line::from(Span::styled(l.pin_optional(), theme::muted())));
    }
    if app.session.wrong_pins > 0 {
        lines.push(Line::from(Span::styled(
            l.pin_wrong(MAX_WRONG_PINS - app.session.wrong_pins),
            Style::new().fg(theme::BAD),
        )));
    }
    centred(lines, area, buf);
}

// ---------------------------------------------------------------------- sending

fn render_sending(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let (ratio, stage) = match &app.session.sending {
        Some(Sending::Progress(_, p)) if p.submitted => (0.95, l.sending_authorising().to_string()),
        Some(Sending::Progress(_, p)) => {
            let r = if p.bytes > 0 {
                p.bytes_sent as f64 / p.bytes as f64
            } else {
                0.0
            };
            (0.1 + 0.8 * r, l.sending_upload(p.photos_sent, p.photos))
        }
        Some(Sending::Saved(_)) => (0.1, l.sending_saved().to_string()),
        _ => (0.02, l.sending_title().to_string()),
    };
    let [_, head, _, gauge, stage_row, _, wait, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    Paragraph::new(Line::from(Span::styled(l.sending_title(), theme::title())))
        .alignment(Alignment::Center)
        .render(head, buf);
    progress_gauge(ratio, gauge, buf);
    Paragraph::new(stage)
        .alignment(Alignment::Center)
        .render(stage_row, buf);
    Paragraph::new(Line::from(Span::styled(l.please_wait(), theme::muted())))
        .alignment(Alignment::Center)
        .render(wait, buf);
}

/// A progress bar, 60 columns wide in the middle of `area`.
fn progress_gauge(ratio: f64, area: Rect, buf: &mut Buffer) {
    Gauge::default()
        .block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(theme::muted()),
        )
        .gauge_style(Style::new().fg(theme::ACCENT))
        .ratio(ratio.clamp(0.0, 1.0))
        .render(area.centered_horizontally(Constraint::Length(60)), buf);
}

// ---------------------------------------------------------------------- problems

fn render_problem(app: &App, problem: &Problem, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let (head, reason) = match problem {
        Problem::Declined(code) => (l.declined_title(), l.decline_reason(*code).to_string()),
        Problem::Rejected(why) => (l.rejected_title(), why.clone()),
        Problem::Failed(why) => (l.failed_title(), why.clone()),
        Problem::PinLocked => (l.declined_title(), l.pin_locked().to_string()),
        Problem::WriteFailed(f) => (l.write_failed_title(), l.write_failure(f)),
    };
    let [_, text, _, buttons, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(7),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    centred(
        vec![
            Line::from(Span::styled(head, Style::new().fg(theme::BAD).bold())),
            Line::from(""),
            Line::from(reason),
            Line::from(""),
            Line::from(Span::styled(l.not_charged(), theme::muted())),
        ],
        text,
        buf,
    );
    let focus = match (problem, app.session.focus) {
        (Problem::PinLocked | Problem::WriteFailed(_), _) => Some(0),
        (_, Focus::Body) => Some(0),
        (_, Focus::Button(b)) => Some(b),
    };
    if matches!(problem, Problem::PinLocked | Problem::WriteFailed(_)) {
        render_buttons(&[l.done()], focus, buttons, buf);
    } else {
        render_buttons(
            &[l.try_another_card(), l.cancel_order()],
            focus,
            buttons,
            buf,
        );
    }
}

// ---------------------------------------------------------------------- S508

fn render_done(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let Some(r) = &app.session.receipt else {
        return;
    };
    let mut lines = Vec::new();
    match &r.outcome {
        Outcome::Approved {
            auth_code,
            delivery_date,
        } => {
            lines.push(Line::from(Span::styled(
                l.approved_title(),
                Style::new().fg(theme::PICKED).bold(),
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(l.ready_on()));
            lines.push(Line::from(Span::styled(
                l.date(*delivery_date),
                Style::new().fg(theme::ACCENT).bold(),
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(format!(
                "{}: {}",
                l.pickup_at(),
                app.cfg.store_name
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                format!("{} {auth_code}", l.auth_code()),
                theme::muted(),
            )));
        }
        Outcome::Pending => {
            lines.push(Line::from(Span::styled(
                l.pending_title(),
                Style::new().fg(theme::PICKED).bold(),
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(l.date_to_be_confirmed()));
            lines.push(Line::from(""));
            lines.push(Line::from(format!(
                "{}: {}",
                l.pickup_at(),
                app.cfg.store_name
            )));
        }
        Outcome::Downloaded { auth_code } => {
            lines.push(Line::from(Span::styled(
                l.downloaded_title(),
                Style::new().fg(theme::PICKED).bold(),
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                format!("{} {auth_code}", l.auth_code()),
                theme::muted(),
            )));
        }
    }
    if !r.downloads.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(l.on_your_card(), theme::title())));
        for d in &r.downloads {
            lines.push(Line::from(format!(
                "{}  ·  {} {}",
                d.title,
                l.licence_code(),
                d.code
            )));
        }
    }
    lines.push(Line::from(Span::styled(
        format!("{} {}", l.order_number(), r.order_id),
        theme::muted(),
    )));
    lines.push(Line::from(Span::styled(
        format!(
            "{} · {} •••• {}",
            l.method_name(r.method),
            r.card_brand,
            r.card_last4
        ),
        theme::muted(),
    )));
    let [text, buttons] = Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(area);
    centred(lines, text, buf);
    render_buttons(&[l.continue_to_receipt()], Some(0), buttons, buf);
}

// ---------------------------------------------------------------------- S509

fn qr_thumb(data: &str) -> Option<Thumb> {
    let (n, modules) = qr_modules(data)?;
    let rgb = modules
        .iter()
        .flat_map(|dark| if *dark { [0, 0, 0] } else { [255, 255, 255] })
        .collect();
    Some(Thumb {
        width: n as u32,
        height: n as u32,
        rgb,
    })
}

fn render_receipt(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let Some(r) = &app.session.receipt else {
        return;
    };
    let [head, main, buttons] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let status = match &app.session.printing {
        Printing::Printed => Span::styled(l.receipt_printed(), Style::new().fg(theme::PICKED)),
        Printing::Failed(_) => Span::styled(l.receipt_failed(), Style::new().fg(theme::BAD)),
        _ => Span::styled(l.receipt_printing(), theme::muted()),
    };
    Paragraph::new(Line::from(vec![
        Span::styled(format!(" {}  ", l.receipt_title()), theme::title()),
        status,
    ]))
    .render(head, buf);
    let [paper, qr_area] = Layout::horizontal([
        Constraint::Length(super::receipt::WIDTH as u16 + 4),
        Constraint::Min(0),
    ])
    .areas(main);
    // The receipt's text without its block-character QR code, which is drawn beside
    // it at full size.
    let text: Vec<Line> = r
        .text()
        .lines()
        .filter(|line| !line.contains('█') && !line.contains('▀') && !line.contains('▄'))
        .map(|line| Line::from(line.to_string()))
        .collect();
    let block = Block::new()
        .borders(Borders::LEFT | Borders::RIGHT)
        .border_style(theme::muted());
    Paragraph::new(Text::from(text))
        .scroll((app.session.receipt_scroll, 0))
        .block(block)
        .style(Style::new().fg(Color::Black).bg(Color::Rgb(245, 245, 240)))
        .render(paper, buf);
    // The order's QR code to collect prints; for downloads alone, the first licence's.
    let qr_data = match (r.lines.is_empty(), r.downloads.first()) {
        (true, Some(d)) => d.licence.clone(),
        _ => r.order_id.to_string(),
    };
    if let Some(qr) = qr_thumb(&qr_data) {
        let side = qr_area.width.min(qr_area.height * 2);
        let spot = qr_area.centered(
            Constraint::Length(side),
            Constraint::Length(side.div_ceil(2)),
        );
        HalfBlocks { thumb: &qr }.render(spot, buf);
    }
    render_buttons(&[l.done()], Some(0), buttons, buf);
}

// ---------------------------------------------------------------------- S510

fn render_thanks(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let left_s = (app.cfg.thanks_timeout_ms - (app.now_ms - app.screen_since_ms)).max(0) / 1000;
    centred(
        vec![
            Line::from(Span::styled(
                l.thanks_title(),
                Style::new().fg(theme::PICKED).bold(),
            )),
            Line::from(""),
            Line::from(Span::styled(l.take_your_cards(), theme::title())),
            Line::from(""),
            Line::from(Span::styled("▲  ▲", Style::new().fg(theme::ACCENT).bold())),
            Line::from(""),
            Line::from(Span::styled(format!("{left_s}…"), theme::muted())),
            Line::from(""),
            Line::from(if app.cfg.demo_cards.is_empty() {
                Span::raw("")
            } else {
                Span::styled(l.demo_media_hint(), Style::new().fg(theme::WARN))
            }),
        ],
        area,
        buf,
    );
}

// ---------------------------------------------------------------------- counter

fn render_staff_pin(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    centred(
        vec![
            Line::from(Span::styled(l.staff_pin_title(), theme::title())),
            Line::from(""),
            Line::from(Span::styled(
                (0..app.staff_pin_len()).map(|_| "● ").collect::<String>(),
                Style::new().fg(theme::ACCENT).bold(),
            )),
        ],
        area,
        buf,
    );
}

fn render_counter(app: &App, area: Rect, buf: &mut Buffer) {
    let l = app.lang;
    let [head, search, list] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(2),
        Constraint::Min(0),
    ])
    .areas(area);
    Paragraph::new(title(l.counter_title())).render(head, buf);
    Paragraph::new(vec![
        Line::from(Span::styled(
            format!(" {}", l.counter_search()),
            theme::muted(),
        )),
        Line::from(vec![
            Span::raw(" > "),
            Span::styled(
                format!("{}▏", app.counter.query),
                Style::new().fg(theme::ACCENT).bold(),
            ),
        ]),
    ])
    .render(search, buf);
    let rows = app.counter.matching();
    if rows.is_empty() {
        Paragraph::new(Line::from(Span::styled(
            format!(" {}", l.counter_none()),
            theme::muted(),
        )))
        .render(list, buf);
        return;
    }
    let room = usize::from(list.height).saturating_sub(2).max(1);
    let top = app.counter.cursor.saturating_sub(room - 1);
    let mut lines = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(top).take(room) {
        let focused = i == app.counter.cursor;
        let date = row
            .delivery_date
            .map(|d| d.format("%m/%d").to_string())
            .unwrap_or_else(|| "--/--".into());
        let text = format!(
            " {} {:<26} {date}  {:>3}  {:<14} {:>9}",
            // ◇: taken offline (the hint below says so for the focused row).
            match (focused, row.offline) {
                (true, _) => "▸",
                (false, true) => "◇",
                (false, false) => " ",
            },
            row.order_id.to_string(),
            row.prints,
            format!("{} {}", row.card_brand, row.card_last4),
            l.money(row.total),
        );
        let state = format!(" {}", l.state_name(row.state));
        let style = if focused {
            theme::focused()
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(text, style),
            Span::styled(
                state,
                style.fg(if focused { Color::Black } else { theme::PICKED }),
            ),
        ]));
    }
    if let Some(row) = rows.get(app.counter.cursor) {
        lines.push(Line::from(""));
        use printmesh_protocol::order::OrderState;
        let hint = match row.state {
            OrderState::Delivered => l.counter_mark_collected(),
            OrderState::Collected => l.counter_already_collected(),
            _ => l.counter_not_ready(),
        };
        let hint = if row.offline {
            format!(" {hint}  ◇ {}", l.taken_offline())
        } else {
            format!(" {hint}")
        };
        lines.push(Line::from(Span::styled(hint, theme::muted())));
    }
    Paragraph::new(lines).render(list, buf);
}
