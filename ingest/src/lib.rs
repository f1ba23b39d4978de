//! The ingest pipeline (report §2.6): sources → validate → convert → verify → upload.
