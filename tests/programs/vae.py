"""Variational autoencoder (the pytorch/examples VAE, small): reparameterisation, BCE + KL loss, Adam.

The reparameterisation noise comes with each batch (``eps``), so all three runs see the same numbers."""


def build_models(torch):
    nn = torch.nn
    F = torch.nn.functional

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 100)
            self.fc21 = nn.Linear(100, 10)
            self.fc22 = nn.Linear(100, 10)
            self.fc3 = nn.Linear(10, 100)
            self.fc4 = nn.Linear(100, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar, eps):
            std = torch.exp(0.5 * logvar)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x, eps):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar, eps)
            return self.decode(z), mu, logvar

    return {"model": VAE()}


def make_step(torch, models):
    F = torch.nn.functional
    model = models["model"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_function(recon_x, x, mu, logvar):
        BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return BCE + KLD

    def train_step(data, eps):
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data, eps)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def make_data(torch):
    return [(torch.rand(16, 1, 28, 28), torch.randn(16, 10)) for _ in range(3)]
