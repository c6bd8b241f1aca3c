mod embedded;
mod errors;
mod health;
mod helpers;
mod openapi;
mod settings;
mod test_db;
