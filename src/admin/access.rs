//! Who is asking, and what they may see. The admin token may do
//! everything; a merchant API key sees and acts on its own merchant only:
//! another merchant's objects answer 404 (as if they did not exist), and
//! admin-only routes answer 403.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, AppResult, ErrorKind};
use crate::ids::MerchantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Admin,
    Merchant {
        key_id: String,
        merchant_id: MerchantId,
    },
}

impl Access {
    /// The audit log's actor.
    pub fn actor(&self) -> String {
        match self {
            Access::Admin => crate::store::audit::ADMIN.to_string(),
            Access::Merchant { key_id, .. } => key_id.clone(),
        }
    }

    /// Refuses a merchant key on an admin-only route.
    pub fn admin_only(&self) -> AppResult<()> {
        match self {
            Access::Admin => Ok(()),
            Access::Merchant { .. } => Err(AppError::new(
                ErrorKind::Forbidden,
                "this route needs the admin token; a merchant API key may not use it",
            )),
        }
    }

    /// Lets the caller see an object of `owner`, or answers not found (for
    /// a key of another merchant) naming `what` and `id` as asked.
    pub fn may_see(&self, owner: &MerchantId, what: &str, id: &str) -> AppResult<()> {
        match self {
            Access::Merchant { merchant_id, .. } if merchant_id != owner => {
                Err(AppError::not_found(what, id))
            }
            _ => Ok(()),
        }
    }

    /// The merchant a list is confined to: the key's, whatever was asked
    /// for (asking for another merchant's finds nothing).
    pub fn confine(&self, asked: Option<MerchantId>) -> Confined {
        match self {
            Access::Admin => Confined::To(asked),
            Access::Merchant { merchant_id, .. } => match asked {
                Some(m) if &m != merchant_id => Confined::Nothing,
                _ => Confined::To(Some(merchant_id.clone())),
            },
        }
    }
}

/// A list's merchant filter after access.
pub enum Confined {
    To(Option<MerchantId>),
    /// A key asked for another merchant's rows: an empty list.
    Nothing,
}

/// The route layer of admin-only routes.
pub async fn require_admin(req: Request, next: Next) -> Response {
    let access = req.extensions().get::<Access>().cloned();
    match access.map(|a| a.admin_only()) {
        Some(Ok(())) => next.run(req).await,
        Some(Err(e)) => super::ApiError(e).into_response(),
        None => super::ApiError(AppError::internal("no access resolved")).into_response(),
    }
}
