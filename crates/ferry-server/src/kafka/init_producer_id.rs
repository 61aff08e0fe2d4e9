//! InitProducerId: producer ids for idempotent producers (transactions are not supported).
//!
//! A new producer gets a fresh id (unique across restarts) with epoch 0. A producer that
//! passes its current id and epoch (KIP-360, after a sequence error) gets the same id with
//! the next epoch, which restarts its sequence numbers at 0.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{code, error_code, Conn};

pub fn handle(conn: &Conn, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = code::INVALID_REQUEST;
        return r;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        if req.producer_epoch == i16::MAX {
            // Epoch exhausted: hand out a new id instead.
        } else {
            r.producer_id = req.producer_id;
            r.producer_epoch = req.producer_epoch + 1;
            return r;
        }
    }
    match conn.streams().next_producer_id() {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => r.error_code = error_code(&e),
    }
    r
}
