// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// A minimal ERC-20 for payhook's chain tests: the deployer holds the whole
/// supply; `transfer` emits the standard Transfer event (and reverts on an
/// insufficient balance); `transferTwice` pays the same address twice in one
/// transaction (two Transfer logs in one receipt).
contract TestToken {
    uint8 public decimals;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(uint8 decimals_) {
        decimals = decimals_;
        balanceOf[msg.sender] = 10 ** 30;
        emit Transfer(address(0), msg.sender, 10 ** 30);
    }

    function transfer(address to, uint256 value) public returns (bool) {
        require(balanceOf[msg.sender] >= value, "insufficient balance");
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }

    function transferTwice(address to, uint256 a, uint256 b) external returns (bool) {
        transfer(to, a);
        transfer(to, b);
        return true;
    }
}
