//! Integration tests: one binary, one module per feature. Everything here goes over real loopback
//! sockets or runs the real `trainar-mcp` binary.

mod catalogue;
mod catalogue_models;
mod common;
mod dispatch;
mod front_page;
mod gateway_fixture;
mod hardening;
mod mcp_clients;
mod mcp_http;
mod mcp_modern;
mod oauth;
mod operations;
mod replicas;
mod replicas_fixture;
mod sandbox_billing_devices;
mod sandbox_core;
mod sandbox_fixture;
mod sandbox_integrations_sessions_reports;
mod sandbox_knowledge;
mod sandbox_skills_users_webhooks;
mod sandbox_tenancy;
mod tools_diff;
mod upstream_checks;
