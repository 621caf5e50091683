//! [`FlowOfRefreshToken`]: the flow a refresh token's family began in.

use super::{FlowOfRefreshToken, RefreshTokens};
use crate::trace::FlowId;
use kameo::message::{Context, Message};
use tokio::time::Instant;

impl Message<FlowOfRefreshToken> for RefreshTokens {
    type Reply = Option<FlowId>;

    async fn handle(
        &mut self,
        msg: FlowOfRefreshToken,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.family_of(&msg.token.sha256(), Instant::now())
            .map(|family| FlowId::from_claim(&family.record.flow))
    }
}
