pub mod render;
pub mod fcgi;
