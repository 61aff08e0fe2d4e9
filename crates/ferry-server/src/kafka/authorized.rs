//! The "authorized operations" that Metadata, DescribeCluster and DescribeGroups report when a
//! client asks for them: a bit field of Kafka's ACL operation codes (`AclOperation`).
//!
//! Ferry has no ACLs yet, so every client may do every operation Kafka defines for the
//! resource, and that is what is reported, as a Kafka broker without an authorizer does. When
//! principals and ACLs arrive, this module is where the answer becomes per client.

/// Kafka's ACL operation codes (`org.apache.kafka.common.acl.AclOperation`).
mod op {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;
}

/// What the operations are reported for.
#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Cluster,
    Topic,
    Group,
}

/// The value for "not asked for" (Kafka's `Integer.MIN_VALUE`): clients read it as unknown.
pub const NOT_ASKED: i32 = i32::MIN;

/// The operations a client may perform on `resource`, or [`NOT_ASKED`] when it did not ask.
pub fn operations(resource: Resource, asked: bool) -> i32 {
    if !asked {
        return NOT_ASKED;
    }
    // The operations Kafka defines for each resource type (`AclEntry.supportedOperations`).
    let ops: &[u8] = match resource {
        Resource::Cluster => &[
            op::CREATE,
            op::CLUSTER_ACTION,
            op::DESCRIBE_CONFIGS,
            op::ALTER_CONFIGS,
            op::IDEMPOTENT_WRITE,
            op::ALTER,
            op::DESCRIBE,
        ],
        Resource::Topic => &[
            op::READ,
            op::WRITE,
            op::CREATE,
            op::DESCRIBE,
            op::DELETE,
            op::ALTER,
            op::DESCRIBE_CONFIGS,
            op::ALTER_CONFIGS,
        ],
        Resource::Group => &[op::READ, op::DESCRIBE, op::DELETE],
    };
    ops.iter().fold(0, |bits, &op| bits | 1 << op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_bits_of_kafka_acl_codes_and_min_when_not_asked() {
        assert_eq!(operations(Resource::Topic, false), i32::MIN);
        // READ, DESCRIBE, DELETE = bits 3, 8 and 6.
        assert_eq!(operations(Resource::Group, true), 0b1_0100_1000);
        let cluster = operations(Resource::Cluster, true);
        for bit in [5, 7, 8, 9, 10, 11, 12] {
            assert_ne!(cluster & 1 << bit, 0, "bit {bit}");
        }
        assert_eq!(
            cluster & 1 << op::READ,
            0,
            "READ is not a cluster operation"
        );
    }
}
