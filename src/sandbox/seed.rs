//! The first start: the first tenant, its admin key, and (unless `--seed none`) the demo data.
//!
//! Seeding runs in one transaction, in dependency order: users before the tasks, devices and
//! sessions that point at them; sessions and executions before the minute ledger that bills them.

use crate::sandbox::db::{Db, Store};
use crate::sandbox::error::ApiError;
use crate::sandbox::{
    Config, FirstStart, account, billing, devices, integrations, knowledge, sessions, skills,
    tasks, tenants, users, webhooks,
};
use rusqlite::Transaction;

pub const DEMO_TENANT: &str = "Acme Field Services";

/// Creates the first tenant when there is none; with a fixed admin key, makes sure it exists.
pub fn first_start(db: &Db, config: &Config) -> Result<Option<FirstStart>, ApiError> {
    db.transaction_blocking(|tx| {
        let tenants: i64 = tx.query_row("SELECT COUNT(*) FROM tenants", [], |row| row.get(0))?;
        if tenants > 0 {
            if let Some(secret) = config.admin_key.as_deref()
                && !tenants::secret_exists(tx, secret)?
            {
                return Err(ApiError::bad_request(
                    "TRAINAR_SANDBOX_ADMIN_KEY names a key this data dir does not have; use a fresh --data-dir",
                ));
            }
            return Ok(None);
        }
        let (tenant_id, admin_key) = new_tenant(tx, DEMO_TENANT, config.admin_key.as_deref(), config.demo_seed)?;
        Ok(Some(FirstStart { tenant_id, tenant_name: DEMO_TENANT.to_string(), admin_key }))
    })
}

/// A tenant with its account, settings and admin key; with `demo`, realistic data too.
pub fn new_tenant(
    tx: &Transaction,
    name: &str,
    admin_secret: Option<&str>,
    demo: bool,
) -> Result<(String, String), ApiError> {
    if let Some(secret) = admin_secret {
        tenants::check_secret_format(secret)?;
    }
    let (tenant_id, secret) = tenants::create_tenant(tx, name, admin_secret)?;
    let store = Store::new(tx, &tenant_id);
    account::init_tenant(&store, name)?;
    if demo {
        users::seed_demo(&store)?;
        devices::seed_demo(&store)?;
        skills::seed_demo(&store)?;
        knowledge::seed_demo(&store)?;
        sessions::seed_demo(&store)?;
        tasks::seed_demo(&store)?;
        billing::seed_demo(&store)?;
        integrations::seed_demo(&store)?;
        webhooks::seed_demo(&store)?;
    }
    Ok((tenant_id, secret))
}
