//! The ids of the bundled sample organization (policies/directory.yaml), for tests.
#![allow(dead_code, reason = "each test binary uses some")]

pub const ORG: &str = "743818ac-9cc4-413c-aa3b-0d14700954e9";
pub const PRODUCTION: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
pub const STAGING: &str = "d5320975-d92d-4b35-9413-9b848998b5bf";
pub const CHURN: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
pub const FRAUD: &str = "45f60d6d-243d-4e8e-8b96-0ae5e16357de";
pub const SANDBOX: &str = "42f33105-edf6-4bee-8385-c589bb25ded0";
pub const ML_ENG: &str = "bba0b1e4-baaf-4db0-862c-0a6718adc0fe";
pub const PLATFORM: &str = "f5135f22-db1c-457d-9d9e-b7d016a19800";
pub const AUDITORS: &str = "fe018023-9456-47d2-b067-1334d4c1ef3a";
pub const ADA: &str = "8fc22834-6a2b-46cc-8682-46129b366219";
pub const BOB: &str = "8a5e8598-b203-4344-948f-32f6cd6c6e30";
pub const CAROL: &str = "783f4f04-072f-4dfd-bc1d-210bfa40fff2";
pub const DAVE: &str = "9a1b418a-a4d7-49df-aa12-860e622a068d";
pub const ERIN: &str = "bd83f12c-3cd2-4db0-9bed-f2fa60d76d28";
pub const FRANK: &str = "4dba2e0e-f2cf-4f5c-a551-f4a184c52b13";
pub const GRACE: &str = "7c43a64e-c811-4df9-a0f1-9b1a74220e53";
pub const HEIDI: &str = "ac265805-624b-4e13-88d0-81a1415a3441";
pub const IVAN: &str = "21ec6c5f-79fc-4618-aed8-f374553b28a2";
pub const JUDY: &str = "59c64f49-e3c0-4459-a355-5fffaa113276";
pub const KEN: &str = "96f455e3-fa61-43b4-876d-6c9c4f18effc";
pub const MALLORY: &str = "2edb91ee-10ed-48e6-a94b-fa1ca5f36277";
pub const NINA: &str = "7f5b82c8-1a37-4260-ae25-977b5c4f47ec";
pub const CI_BOT: &str = "1bc20b2c-3eb2-4348-86a1-d94f1b28b8e7";
pub const DEPLOYER: &str = "de1c8f1f-5562-4dc1-8d1b-ebddcf366d98";
