from typing import Annotated

from fastapi import Depends

from dispatch.kernel.problems import raises
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import Settings, SettingsDep
from wechat.client import AccountClient
from wechat.errors import WechatOff


@raises(WechatOff)
def wechat_settings(settings: SettingsDep) -> Settings:
    """The settings, when an official account is configured (503 problem JSON otherwise)."""
    if not settings.wechat.enabled:
        raise WechatOff("this deployment has no WeChat official account (set WECHAT__APP_ID)")
    return settings


def account_client(settings: Annotated[Settings, Depends(wechat_settings)], redis: RedisDep) -> AccountClient:
    return AccountClient(settings.wechat, redis)


WechatOn = Annotated[Settings, Depends(wechat_settings)]
ClientDep = Annotated[AccountClient, Depends(account_client)]
