//! What the `continuity` library logs (with `tracing`: the node, the link, the intake) goes
//! to the element's GStreamer debug category, `continuity`, at the matching level. Without
//! this it went nowhere: the plugin is its own shared library with its own copy of `tracing`,
//! so no application's subscriber sees it. `GST_DEBUG=continuity:4` shows it, and so does
//! `continuity play -v`, which prints that category.

use std::fmt::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::CAT;

/// The GStreamer level for a `tracing` level.
fn gst_level(level: &Level) -> gst::DebugLevel {
    match *level {
        Level::ERROR => gst::DebugLevel::Error,
        Level::WARN => gst::DebugLevel::Warning,
        Level::INFO => gst::DebugLevel::Info,
        Level::DEBUG => gst::DebugLevel::Debug,
        Level::TRACE => gst::DebugLevel::Trace,
    }
}

/// The event's message, then its other fields as `name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

struct ToCategory;

impl<S: Subscriber> Layer<S> for ToCategory {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The category's threshold can change at any time: ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        gst_level(metadata.level()) <= CAT.threshold()
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        gst::log_with_level!(CAT, gst_level(event.metadata().level()), "{}", text.0);
    }
}

/// Send the library's log to the `continuity` category (once per process; an application
/// that set its own `tracing` subscriber in this copy of the library keeps it).
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(ToCategory);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
