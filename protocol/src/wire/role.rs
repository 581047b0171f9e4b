//! The roles a node can play, and what the protocol says of each: which ones belong to
//! a store, which budget their traffic draws on. The runtime asks these questions and
//! never names a role itself.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Kiosk,
    Intermediary,
    Acquirer,
    Lab,
    Courier,
    Content,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Kiosk => "kiosk",
            Role::Intermediary => "intermediary",
            Role::Acquirer => "acquirer",
            Role::Lab => "lab",
            Role::Courier => "courier",
            Role::Content => "content",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of a node's two traffic budgets (`[limits]`) a peer's requests draw on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetClass {
    /// A store's kiosk (or a courier, or a content company): an order every few
    /// seconds.
    Store,
    /// A service (intermediary, acquirer, lab): the network's steady traffic.
    Service,
}

impl Role {
    /// Every role, in the order of the enum.
    pub const ALL: [Role; 6] = [
        Role::Kiosk,
        Role::Intermediary,
        Role::Acquirer,
        Role::Lab,
        Role::Courier,
        Role::Content,
    ];

    /// Whether a node of this role belongs to one store (its certificate names it; it
    /// is shown only that store's orders). Only a kiosk does.
    pub fn belongs_to_store(self) -> bool {
        matches!(self, Role::Kiosk)
    }

    /// "a lab", "an acquirer".
    pub fn with_article(self) -> String {
        match self {
            Role::Acquirer | Role::Intermediary => format!("an {self}"),
            Role::Content => "a content company".into(),
            _ => format!("a {self}"),
        }
    }

    /// The budget a peer in this role's requests draw on.
    pub fn request_budget(self) -> BudgetClass {
        match self {
            Role::Kiosk | Role::Courier | Role::Content => BudgetClass::Store,
            Role::Intermediary | Role::Acquirer | Role::Lab => BudgetClass::Service,
        }
    }

    /// The budget the events an origin in this role gossips draw on. A kiosk's are
    /// its customers collecting; a courier reports every parcel of a round at once,
    /// so it has the services' budget.
    pub fn event_budget(self) -> BudgetClass {
        match self {
            Role::Kiosk | Role::Content => BudgetClass::Store,
            _ => BudgetClass::Service,
        }
    }
}
